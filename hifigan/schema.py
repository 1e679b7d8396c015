"""The config machinery: plain mappings checked against dataclasses (keys, types, choices, ranges).

Imports nothing from hifigan but its errors, so the registry (which validates a registered
class's nested Config) and the run schema in config.py both build on it without a cycle.
A registry-selected section ({arch: dcgan, z_dim: 100}) is a `Spec`; its dataclass field carries the
Registry object itself in its metadata (`spec_field`), so this module never imports a registry.

Every float must be finite and every integer must fit in 64 bits, wherever it sits; a field's allowed
range is declared where the field is defined, with `bounded(default, ge=..., le=..., pow2=...)`, and
applies to each number of a list, tuple or dict field. Messages quote user values through `short`,
so a megabyte-long string or a 10,000-digit integer in a config still gives a one-line error.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
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
# Bounded values: ranges declared with the field, reprs that cannot flood a one-line message

MAX_RESOLUTION = 8192     # largest image side a network may have (one 8192^2 RGB image is 0.8 GB in fp32)
MAX_WIDTH = 65536         # largest latent size, layer width or channel count
MAX_CHANNELS = 16         # largest number of image channels (data delivers 1 or 3)
MAX_CLASSES = 65536       # largest number of classes or categorical codes
MAX_LAYERS = 64           # largest depth of a stack of layers given as a count (mapping networks)
MAX_KIMG = 1e9            # largest length / interval in thousands of images (10^12 images)
MAX_COUNT = 1 << 30       # largest plain count (repeats, intervals, samples)
MAX_BATCH = 1 << 20       # largest batch (global, per rank, per forward pass)
INT64 = (-(1 << 63), (1 << 63) - 1)


class _ShortRepr(reprlib.Repr):
    def __init__(self, n: int):
        super().__init__()
        self.maxstring = self.maxother = self.maxlong = max(n - 10, 12)
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 6
        self.maxlevel = 3

    def repr_int(self, x, level):
        if x.bit_length() > 512:  # str() of a 4,300+ digit int raises; a 150-digit one is unreadable anyway
            return f"<an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


def short(value, n: int = 80) -> str:
    """repr(value) in at most `n` characters and one line (a user value quoted in an error message)."""
    try:
        text = _ShortRepr(n).repr(value)
    except Exception:  # a repr that raises: fall back to the type
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= n else text[:n - 3] + "..."


def key_text(k, n: int = 40) -> str:
    """A mapping key as it goes into a dotted key of a message: str keys as they are, bounded."""
    text = k if isinstance(k, str) else short(k, n)
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= n else text[:n - 3] + "..."


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field (of each number, for list / tuple / dict fields)."""
    ge: float | None = None   # lowest allowed value
    gt: float | None = None   # values must be above this
    le: float | None = None   # highest allowed value
    lt: float | None = None   # values must be below this
    pow2: bool = False        # a power of two (integers only)
    why: str = ""             # said after the range in the message (why the bound is there)

    def ok(self, v) -> bool:
        if self.ge is not None and not v >= self.ge or self.gt is not None and not v > self.gt:
            return False
        if self.le is not None and not v <= self.le or self.lt is not None and not v < self.lt:
            return False
        return not self.pow2 or (isinstance(v, int) and v > 0 and v & (v - 1) == 0)

    def describe(self, integer: bool) -> str:
        what = "a power of two" if self.pow2 else "an integer" if integer else "a number"
        lo = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        hi = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if lo and hi:
            text = f"{what} in {lo}, {hi}"
        elif lo:
            text = f"{what} {'>=' if lo[0] == '[' else '>'} {lo[1:]}"
        elif hi:
            text = f"{what} {'<=' if hi[-1] == ']' else '<'} {hi[:-1]}"
        else:
            text = what
        return f"{text}; {self.why}" if self.why else text


def _num(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def bounded(default=dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, pow2: bool = False,
            why: str = "", default_factory=dataclasses.MISSING, **metadata):
    """A dataclass field whose values must lie in a range: `z_dim: int = bounded(100, ge=1, le=MAX_WIDTH)`.
    For a list / tuple / dict field the range applies to each number in it; None passes (optional fields)."""
    meta = {"range": Range(ge, gt, le, lt, pow2, why), **metadata}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def resolution_field(default: int, lo: int, pow2: bool = True):
    """The image side of a network: `lo` .. MAX_RESOLUTION, a power of two unless `pow2` is False."""
    return bounded(default, ge=lo, le=MAX_RESOLUTION, pow2=pow2,
                   why=f"{MAX_RESOLUTION} is the largest resolution hifigan builds")


def check_range(rng: Range, value, key: str):
    """Raise ConfigError unless every number in `value` (a number, or nested lists / tuples / dicts) is in `rng`."""
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_range(rng, v, f"{key}.{i}")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            check_range(rng, v, f"{key}.{key_text(k)}")
        return
    if isinstance(value, (int, float)) and not rng.ok(value):
        if rng.pow2 and dataclasses.replace(rng, pow2=False).ok(value):  # in range, only not a power of two
            lo = rng.ge if rng.ge is not None else rng.gt
            raise ConfigError(key, f"must be a power of two{f' >= {_num(lo)}' if lo is not None else ''}, "
                                   f"got {short(value)}")
        raise ConfigError(key, f"{short(value)} is out of range (allowed: {rng.describe(isinstance(value, int))})")


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
            raise ConfigError(key, f"expected a list, got {short(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(key, f"expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, f"{key}.{i}") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else typing.Any
        out = [_convert(item, v, f"{key}.{i}") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {short(value)}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool) or isinstance(k, int) and not INT64[0] <= k <= INT64[1]:
                raise ConfigError(key, f"keys must be names or integers, got {short(k)}")
            out[str(k)] = _convert(args[1], v, f"{key}.{key_text(k)}")
        return out
    if tp is typing.Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT64[0] <= value <= INT64[1]:
                raise ConfigError(key, f"{short(value)} is out of range (allowed: a 64-bit integer, |value| < 2^63)")
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):  # PyYAML reads 2e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            return _finite(number, key)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(key, f"expected {_type_name(tp)}, got {short(value)} ({type(value).__name__})")


def _finite(number, key: str) -> float:
    """`number` as a float; nan, inf and numbers beyond float range are a ConfigError (nan passes
    every comparison-based range check, so it is refused here, for every float field of every section)."""
    try:
        x = float(number)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise ConfigError(key, f"{short(number)} is not a finite number; give a finite value")
    return x


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
    if not isinstance(name, str):
        raise ConfigError(_join(key, sel), f"expected a {reg.kind} name, got {short(name)} "
                                           f"(one of {', '.join(reg.names())})")
    if name in getattr(reg, "moved_names", {}):
        raise ConfigError(_join(key, sel), f"{reg.kind} {short(name)}: {reg.moved_names[name]}")
    if name not in reg.names():
        close = difflib.get_close_matches(name[:100], reg.names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(_join(key, sel), f"unknown {reg.kind} {short(name)} ({hint}known: {', '.join(reg.names())})")
    return Spec(name, from_mapping(reg.get(name).Config, rest, key), sel)


def from_mapping(cls, mapping, prefix: str = ""):
    """Build dataclass `cls` from a plain mapping, checking keys, types, choices and ranges."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(prefix, f"expected a mapping, got {short(mapping)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    moved = getattr(cls, "MOVED", {})  # keys that left this section: say where they went
    for k in mapping:
        if k not in fields and k in moved:
            raise ConfigError(_join(prefix, key_text(k)), moved[k])
        if k not in fields:
            close = difflib.get_close_matches(k[:100], list(fields), n=1) if isinstance(k, str) else None
            hint = (f" (did you mean {_join(prefix, close[0])}?)" if close else
                    f" (known: {', '.join(fields)})" if fields else " (this section takes no settings here)")
            raise ConfigError(_join(prefix, key_text(k)), f"unknown key{hint}")
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
            raise ConfigError(key, f"{short(value)} is not allowed (choose from {', '.join(map(str, choices))})")
        if "range" in f.metadata:
            check_range(f.metadata["range"], value, key)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # a Config's __post_init__ check
        raise ConfigError(prefix, _one_line(e)) from None


def _one_line(e: Exception, n: int = 300) -> str:
    text = " ".join(str(e).split("\n")).strip() or type(e).__name__
    return text if len(text) <= n else text[:n - 3] + "..."


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
