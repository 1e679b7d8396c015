"""A restricted unpickler for NVIDIA's network-snapshot pickles (stylegan2-ada-pytorch, stylegan3).

Those pickles are written by `torch_utils.persistence`: every network module is stored as a call
`_reconstruct_persistent_obj(meta)`, where `meta` holds the Python source of the module that defined
its class (`module_src`), the class name and the instance's `__dict__` (`state`: `_parameters`,
`_buffers`, `_modules`, `_init_args`, `_init_kwargs` and plain attributes). NVIDIA's own loader
compiles and runs that source, so opening such a file with `pickle.load` runs whatever it carries.

Here every global the pickle asks for is looked up in a fixed table of stand-ins (`SAFE_GLOBALS`);
anything else is refused with a one-line `RefusedGlobal` before it is called. In particular
`_reconstruct_persistent_obj` becomes `Persisted.from_meta`, which keeps the class name, the init
arguments and the tensors as an inert record: the embedded source is never compiled, executed or
even kept. Tensors are rebuilt by torch's own functions from storages that `torch.load(...,
weights_only=True)` decodes.
"""
from __future__ import annotations

import builtins
import collections
import io
import pickle
from dataclasses import dataclass, field

import numpy as np
import torch

from hifigan.errors import UserError

ACCEPTED = "only network-snapshot pickles of stylegan2-ada-pytorch / stylegan3 (StyleGAN2 networks) are accepted"


class RefusedGlobal(UserError):
    """The pickle asked for a Python object outside the stand-in table."""


@dataclass
class Persisted:
    """An inert record of one `persistence`-decorated module: what NVIDIA's loader would have built."""
    class_name: str
    init_args: tuple = ()
    init_kwargs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)    # name -> tensor (None entries dropped)
    buffers: dict = field(default_factory=dict)   # name -> tensor
    modules: dict = field(default_factory=dict)   # name -> Persisted

    @classmethod
    def from_meta(cls, meta) -> Persisted:
        """The stand-in for `torch_utils.persistence._reconstruct_persistent_obj(meta)`."""
        if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
            raise UserError("a persistent object without a class record (meta.type / meta.class_name); " + ACCEPTED)
        state = meta.get("state")
        if not isinstance(state, dict):
            raise UserError(f"persistent object {meta['class_name'][:60]!r} has no state dict; " + ACCEPTED)

        def table(key, kind):
            value = state.get(key) or {}
            if not isinstance(value, dict):
                raise UserError(f"persistent object {meta['class_name'][:60]!r}: {key} is not a dict; " + ACCEPTED)
            return {k: v for k, v in value.items() if v is not None and isinstance(v, kind)}
        kwargs = state.get("_init_kwargs") or {}
        return cls(class_name=meta["class_name"], init_args=tuple(state.get("_init_args") or ()),
                   init_kwargs=dict(kwargs) if isinstance(kwargs, dict) else {},
                   params=table("_parameters", torch.Tensor), buffers=table("_buffers", torch.Tensor),
                   modules=table("_modules", Persisted))

    def tensors(self, prefix: str = "") -> dict:
        """Every parameter and buffer of this module and its submodules, by dotted name."""
        out = {prefix + k: v for k, v in {**self.params, **self.buffers}.items()}
        for name, m in self.modules.items():
            out.update(m.tensors(f"{prefix}{name}."))
        return out


class EasyDict(dict):
    """`dnnlib.util.EasyDict` as a plain dict (no attribute access, no code)."""

    def __setstate__(self, state):  # an EasyDict's (empty) instance __dict__; nothing to keep
        pass


class _Token:
    """A class a pickle names only as an argument (torch.Tensor, np.ndarray): never called."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"<{self.name}>"


TENSOR, PARAMETER, NDARRAY = _Token("torch.Tensor"), _Token("torch.nn.Parameter"), _Token("numpy.ndarray")


def _storage_from_bytes(b):
    if not isinstance(b, (bytes, bytearray)):
        raise UserError("a tensor storage that is not bytes; " + ACCEPTED)
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _is_storage(s) -> bool:
    return isinstance(s, (torch.UntypedStorage, torch.storage.TypedStorage))


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not _is_storage(storage):
        raise UserError("a tensor without a storage; " + ACCEPTED)
    return torch._utils._rebuild_tensor_v2(storage, offset, tuple(size), tuple(stride), False,
                                           collections.OrderedDict())


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise UserError("a parameter without a tensor; " + ACCEPTED)
    return data.detach()


def _rebuild_from_type(func, typ, args, state):
    if func not in (_rebuild_tensor, _rebuild_parameter) or typ not in (TENSOR, PARAMETER):
        raise UserError("a tensor subclass; " + ACCEPTED)
    return func(*args)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UserError("a numpy scalar of an object dtype; " + ACCEPTED)
    return np.frombuffer(data, dtype=dtype)[0]


def _np_dtype(obj, align=False, copy=False):
    if not isinstance(obj, str):
        raise UserError("a numpy dtype not given by name; " + ACCEPTED)
    return np.dtype(obj, align=bool(align))


def _np_reconstruct(cls, shape, dtype_code):
    if cls is not NDARRAY:
        raise UserError("a numpy array subclass; " + ACCEPTED)
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


_STORAGES = ("FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
             "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "UntypedStorage")
_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")
_BUILTINS = ("set", "frozenset", "list", "tuple", "dict", "int", "float", "complex", "str", "bytes",
             "bytearray", "bool", "slice", "range")

SAFE_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): Persisted.from_meta,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch", "Tensor"): TENSOR,
    ("torch.nn.parameter", "Parameter"): PARAMETER,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", s): getattr(torch, s) for s in _STORAGES},
    **{("torch", d): getattr(torch, d) for d in _DTYPES},
    **{("builtins", b): getattr(builtins, b) for b in _BUILTINS},
    **{(m, "scalar"): _np_scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_reconstruct"): _np_reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "dtype"): _np_dtype,
    ("numpy", "ndarray"): NDARRAY,
}


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose globals come only from SAFE_GLOBALS; persistent ids are refused."""

    def find_class(self, module, name):
        try:
            return SAFE_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise RefusedGlobal(f"refused to load {str(module)[:80]}.{str(name)[:80]}: {ACCEPTED} "
                                f"(nothing from the file was run)") from None

    def persistent_load(self, pid):
        raise RefusedGlobal(f"refused a persistent id (a torch.save archive inside a pickle?): {ACCEPTED}")


def load(f):
    """Unpickle the open binary file `f` with RestrictedUnpickler (errors propagate to the caller)."""
    return RestrictedUnpickler(f).load()
