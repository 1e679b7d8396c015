"""bias_act in plain CUDA: the launcher for cuda/bias_act.cu, with the interface of triton_impl.py.

The kernels compute exactly what triton_impl's do (fp32 inside, one rounding on store; the bias
index is (offset // stride_c) % C; see fused.py for the autograd, shared by both). The .cu file
includes no torch header, so it compiles with nvcc alone; cuda/binding.cpp turns tensors into the
raw pointers, sizes and the stream that its extern "C" launchers take.

Building: on first use, not at import, torch.utils.cpp_extension.load compiles both files with
ninja into torch's extension cache (TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions), so
later processes only load the cached library; the loader's file lock serialises concurrent
builders (several ranks). The flags are plain -O3, no --use_fast_math: that would swap expf,
tanhf and the division for approximate versions and flush denormals, and the fp32 results would
no longer agree with the reference to a few ulp. A failed build (no CUDA in this torch, no nvcc,
no ninja, a compiler error) raises KernelUnavailable with its first meaningful line and is
remembered, so later calls raise at once instead of compiling again; under impl="auto" dispatch
turns that into one warning and the next implementation.
"""
from __future__ import annotations

import os
import sys
import threading

import torch

from ..dispatch import KernelUnavailable
from . import fused

NAME = "hifigan_bias_act_cuda"
SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda")
SOURCES = [os.path.join(SOURCE_DIR, "binding.cpp"), os.path.join(SOURCE_DIR, "bias_act.cu")]
CUDA_CFLAGS = ["-O3"]

_lib = None          # the loaded extension module
_failure: str | None = None  # why the build failed; never retried in this process
_lock = threading.Lock()


def _missing() -> str | None:
    """What this process lacks to build the extension, before trying (cheap checks only)."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) was built without CUDA"
    from torch.utils import cpp_extension
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    home = cpp_extension.CUDA_HOME  # what the loader will use: CUDA_HOME, CUDA_PATH, nvcc on PATH, /usr/local/cuda
    if home is None or not os.path.exists(os.path.join(home, "bin", "nvcc")):
        return "no CUDA toolkit with nvcc was found (install one, or set CUDA_HOME to it)"
    return None


def _reason(err: BaseException) -> str:
    """One line for an error: a compiler diagnostic ("error: ...") when the text holds one, else its first line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln.lower():  # nvcc's "file.cu(12): error: ...", gcc's "file.cpp:3:1: error: ..."
            return ln[:300]
    return (lines[0] if lines else type(err).__name__)[:300]


def load_extension():
    """The compiled extension, built (or found in the cache) on the first call; KernelUnavailable if it cannot be."""
    global _lib, _failure
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        if _failure is not None:
            raise KernelUnavailable(f"bias_act: impl='cuda' failed to build earlier in this process: {_failure}")
        try:
            missing = _missing()
            if missing:
                raise RuntimeError(missing)
            from torch.utils.cpp_extension import load
            _lib = load(name=NAME, sources=SOURCES, extra_cflags=["-O3"], extra_cuda_cflags=CUDA_CFLAGS,
                        verbose=False)
        except Exception as err:  # any failure to build or load is remembered: no second attempt
            _failure = _reason(err)
            raise KernelUnavailable(f"bias_act: impl='cuda' could not build its extension: {_failure}") from err
        return _lib


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def _clamp(spec) -> float:
    return float(spec.clamp) if spec.clamp is not None else 0.0


def fwd(x, b, y, C, stride_c, spec):
    """y = clamp(act(x + b) * gain); x and y dense with the same strides, b contiguous [C] or None."""
    if x.numel() == 0:
        return
    lib = load_extension()
    if b is not None:
        b = b.to(x.dtype).contiguous()  # the kernel reads b[c] with unit stride
    with torch.cuda.device(x.device):  # the launcher sizes its grid for, and launches on, the current device
        lib.fwd(x, b if b is not None else x, y, C, stride_c, spec.code, spec.alpha, spec.gain, _clamp(spec),
                b is not None, spec.clamp is not None, _stream(x))


def bwd(g, x, b, y, out, C, stride_c, spec):
    """out = g * gain * act'(z) * [|y| < clamp]; every operand in one layout (fused.py guarantees it)."""
    if g.numel() == 0:
        return
    lib = load_extension()
    ref = x if x is not None else y
    # The kernels read and write one dtype. Autograd hands back gradients in the output's dtype, so
    # the operands agree in practice; anything else is computed in x's dtype and copied over.
    target = out if out.dtype == ref.dtype else torch.empty_like(out, dtype=ref.dtype)
    g = g.to(ref.dtype)
    if b is not None:
        b = b.to(ref.dtype).contiguous()
    with torch.cuda.device(ref.device):
        lib.bwd(g, x if x is not None else ref, b if b is not None else ref, y if y is not None else ref, target,
                C, stride_c, spec.code, spec.alpha, spec.gain, _clamp(spec), spec.from_z, b is not None,
                spec.clamp is not None, _stream(ref))
    if target is not out:
        out.copy_(target)


def bias_act(x, b, dim, act, alpha, gain, clamp):
    return fused.bias_act(sys.modules[__name__], x, b, dim, act, alpha, gain, clamp)
