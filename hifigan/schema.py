"""The config machinery: plain mappings checked against dataclasses (keys, types, choices).

Imports nothing from hifigan but its errors, so the registry (which validates a registered
class's nested Config) and the run schema in config.py both build on it without a cycle.
A registry-selected section ({arch: dcgan, z_dim: 100}) is a `Spec`; its dataclass field carries the
Registry object itself in its metadata (`spec_field`), so this module never imports a registry.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field

from hifigan.errors import UserError


class ConfigError(UserError):
    """A config problem at a dotted key; `load_config` prefixes the source (file or command line)."""

    def __init__(self, key: str, msg: str):
        self.key, self.msg = key, msg
        super().__init__(f"{key}: {msg}" if key else msg)


# ----------------------------------------------------------------------------------------------
# Registry-selected sections: {arch: dcgan, z_dim: 100, ...} -> Spec(name="dcgan", cfg=Config(...))

@dataclass
class Spec:
    """A registry entry chosen by name plus its validated Config."""
    name: str
    cfg: typing.Any
    key: str = "arch"  # the YAML key that selects the entry

    def __getattr__(self, item):  # cfg fields read through: spec.z_dim
        if item in ("name", "cfg", "key") or item.startswith("__"):
            raise AttributeError(item)
        return getattr(self.cfg, item)


def spec_field(registry, key: str, default: dict | None):
    """A dataclass field holding a Spec chosen from `registry` (a hifigan.registry.Registry) by `key`;
    default None makes the section optional (absent = no such network)."""
    if default is None:
        return field(default=None, metadata={"registry": registry, "key": key})
    return field(default_factory=lambda: dict(default), metadata={"registry": registry, "key": key})


# ----------------------------------------------------------------------------------------------
# Validation

def _type_name(tp) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    return getattr(tp, "__name__", str(tp))


def _convert(tp, value, key: str):
    """Check / coerce `value` to the annotated type `tp`; raise ConfigError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key)
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        return from_mapping(tp, value, key)
    if origin is list or origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(key, f"expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, f"{key}.{i}") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else typing.Any
        out = [_convert(item, v, f"{key}.{i}") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is typing.Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 2e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _spec(f: dataclasses.Field, value, key: str) -> Spec:
    reg = f.metadata["registry"]
    sel = f.metadata["key"]
    if isinstance(value, Spec):
        value = to_dict(value)
    if isinstance(value, str):
        value = {sel: value}
    if isinstance(value, dict) and sel not in value and f.default_factory is not dataclasses.MISSING:
        value = {sel: f.default_factory()[sel], **value}  # e.g. backend.find_unused_parameters=... alone: the default backend
    if not isinstance(value, dict) or sel not in value:
        raise ConfigError(key, f"expected a mapping with '{sel}:' (one of {', '.join(reg.names())})")
    rest = {k: v for k, v in value.items() if k != sel}
    name = value[sel]
    if name in getattr(reg, "moved_names", {}):
        raise ConfigError(_join(key, sel), f"{reg.kind} {name!r}: {reg.moved_names[name]}")
    if name not in reg.names():
        close = difflib.get_close_matches(str(name), reg.names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(_join(key, sel), f"unknown {reg.kind} {name!r} ({hint}known: {', '.join(reg.names())})")
    return Spec(name, from_mapping(reg.get(name).Config, rest, key), sel)


def from_mapping(cls, mapping, prefix: str = ""):
    """Build dataclass `cls` from a plain mapping, checking keys, types and choices."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(prefix, f"expected a mapping, got {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    moved = getattr(cls, "MOVED", {})  # keys that left this section: say where they went
    for k in mapping:
        if k not in fields and k in moved:
            raise ConfigError(_join(prefix, str(k)), moved[k])
        if k not in fields:
            close = difflib.get_close_matches(str(k), list(fields), n=1)
            hint = f" (did you mean {_join(prefix, close[0])}?)" if close else f" (known: {', '.join(fields)})"
            raise ConfigError(_join(prefix, str(k)), f"unknown key{hint}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name not in mapping:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(key, "missing required key")
            if "registry" in f.metadata and f.default_factory is not dataclasses.MISSING:
                kwargs[name] = _spec(f, f.default_factory(), key)  # defaults of registry sections are validated too
            continue
        value = mapping[name]
        if "registry" in f.metadata:
            kwargs[name] = None if value is None and f.default is None else _spec(f, value, key)
            continue
        value = _convert(hints[name], value, key)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(key, f"{value!r} is not allowed (choose from {', '.join(map(str, choices))})")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # a Config's __post_init__ check
        raise ConfigError(prefix, str(e)) from None


def to_dict(obj):
    """Plain (YAML-safe) form of a config: dataclasses -> dicts, Specs flattened, tuples -> lists."""
    if isinstance(obj, Spec):
        return {obj.key: obj.name, **to_dict(obj.cfg)}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
