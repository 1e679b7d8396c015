"""Registries: an architecture name appears in YAML and in one decorator.

Each registered class carries a nested `Config` dataclass; `REGISTRY.build(name, mapping)`
validates the mapping against it (unknown keys and wrong types fail with a suggestion) and
constructs `cls(cls.Config(**mapping))`.
"""
from __future__ import annotations

import dataclasses
import difflib

from hifigan.errors import UserError
from hifigan.schema import from_mapping, short


class Registry:
    """A name -> class table for one kind of component (generators, objectives, ...)."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package  # importing it registers every entry (looked up lazily: no import cycles)
        self._classes: dict[str, type] = {}
        self.moved_names: dict[str, str] = {}  # names that left this registry -> what to write instead

    def _load(self) -> None:
        import importlib
        importlib.import_module(self.package)

    def register(self, name: str):
        def deco(cls):
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
                raise TypeError(f"{cls.__name__} needs a nested @dataclass Config")
            cls.registry_name = name
            self._classes[name] = cls
            return cls
        return deco

    def moved(self, name: str, hint: str) -> None:
        """Record that `name` is no longer an entry of this registry; configs naming it get `hint`."""
        self.moved_names[name] = hint

    def names(self) -> list[str]:
        self._load()
        return sorted(self._classes)

    def get(self, name: str, where: str = "") -> type:
        self._load()
        if not isinstance(name, str) or name not in self._classes:
            if isinstance(name, str) and name in self.moved_names:
                raise UserError(f"{where}{self.kind} {short(name)}: {self.moved_names[name]}")
            close = difflib.get_close_matches(name[:100], self.names(), n=1) if isinstance(name, str) else None
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"{where}unknown {self.kind} {short(name)} ({hint}known: {', '.join(self.names())})")
        return self._classes[name]

    def config(self, name: str, mapping: dict | None = None, where: str = ""):
        """Validate `mapping` against the class's Config and return the Config instance."""
        return from_mapping(self.get(name, where).Config, mapping or {}, where)

    def build(self, name: str, mapping: dict | None = None, where: str = ""):
        cls = self.get(name, where)
        return cls(self.config(name, mapping, where))


GENERATORS = Registry("generator", "hifigan.models")
DISCRIMINATORS = Registry("discriminator", "hifigan.models")
CLASSIFIERS = Registry("classifier", "hifigan.models")    # C: image -> class logits (cGAN + classifier)
Q_NETWORKS = Registry("q_network", "hifigan.models")      # Q: InfoGAN's code posterior, on D's features or an image
ENCODERS = Registry("encoder", "hifigan.models")          # E: image -> latent (the VAE's q(z|x))
OBJECTIVES = Registry("objective", "hifigan.objectives")
BACKENDS = Registry("backend", "hifigan.train.backends")
DATASETS = Registry("dataset", "hifigan.data")
METRICS = Registry("metric", "hifigan.metrics")
AUGMENTS = Registry("augment", "hifigan.train.augment")  # what D sees: none, ada, diffaugment

# The networks a recipe may name, by config section, and the registry each section selects from.
# A network's kind (in checkpoints: "generator", "classifier", ...) is its registry's kind.
NETWORKS: dict[str, Registry] = {"G": GENERATORS, "D": DISCRIMINATORS, "Q": Q_NETWORKS, "C": CLASSIFIERS,
                                 "E": ENCODERS}


def by_kind(kind: str) -> Registry | None:
    """The network registry whose kind is `kind` (a checkpoint's metadata), or None."""
    return next((r for r in NETWORKS.values() if r.kind == kind), None)
