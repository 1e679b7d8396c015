"""Choosing an implementation for a fused op: impl = "auto" | "reference" | "triton" | "cuda".

- "reference": the plain PyTorch specification; runs anywhere.
- "triton": the Triton kernels; CUDA tensors, or CPU tensors under TRITON_INTERPRET=1 (the interpreter
  is chosen when a kernel is defined, so the variable must be set before the first kernel import).
- "cuda": the pure .cu kernels, JIT-built with ninja through torch's extension loader on first use.
- "auto": the fast path for CUDA tensors only (Triton, else CUDA), the reference otherwise. A fast
  path that fails to build or compile warns once and is never tried again in this process.
An explicit impl that cannot run raises KernelUnavailable with what is missing and how to get it.
The process default (set_default_impl, train.kernels) applies to the ops that have that impl; the
others use "auto" (train.kernels=triton still runs the plain convolution through cuDNN).
Nothing here imports triton or compiles anything at import time.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings

import torch

IMPLS = ("auto", "reference", "triton", "cuda")
FAST_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what the fast paths compute (in fp32 inside)
_default = "auto"
_broken: dict[tuple[str, str], str] = {}  # (op, impl) -> why it failed; never retried


class KernelUnavailable(RuntimeError):
    """An explicitly requested implementation cannot run here."""


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"kernel impl {impl!r} is not known (choose from {', '.join(IMPLS)})")
    return impl


def set_default_impl(impl: str) -> None:
    """The impl used when an op is called with impl=None (the trainer sets it from train.kernels)."""
    global _default
    _default = check_impl(impl)


def default_impl() -> str:
    return _default


@contextlib.contextmanager
def use_impl(impl: str):
    """Temporarily change the default impl: `with use_impl("reference"): G(z)`."""
    old = _default
    set_default_impl(impl)
    try:
        yield
    finally:
        set_default_impl(old)


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve(op: str, impl: str | None, tensors, impls=("triton", "cuda")) -> str:
    """The implementation to run for `op` on `tensors` (None entries ignored); `impls` = the fast
    implementations the op has, in auto's order of preference."""
    impl = check_impl(_default if impl is None else impl)
    ts = [t for t in tensors if t is not None]
    on_cuda = bool(ts) and all(t.is_cuda for t in ts)
    dtypes_ok = all(t.dtype in FAST_DTYPES for t in ts if t.is_floating_point())
    if impl == "reference":
        return impl
    if impl == "auto":
        if not on_cuda or not dtypes_ok:
            return "reference"
        for cand in impls:
            if (op, cand) not in _broken and (cand != "triton" or triton_installed()):
                return cand
        return "reference"
    if impl not in impls:
        raise KernelUnavailable(f"{op}: there is no impl={impl!r} for this op (use "
                                f"{' or '.join(repr(i) for i in (*impls, 'reference'))})")
    if not dtypes_ok:
        raise KernelUnavailable(f"{op}: impl={impl!r} supports float32, bfloat16 and float16, got "
                                f"{sorted({str(t.dtype) for t in ts})} (use impl='reference')")
    if impl == "triton":
        if not triton_installed():
            raise KernelUnavailable(f"{op}: impl='triton' needs the triton package (pip install 'hifigan[kernels]')")
        if not on_cuda and not interpreting():
            raise KernelUnavailable(f"{op}: impl='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before "
                                    "the first kernel import to run the interpreter on the CPU")
        return impl
    if not on_cuda:
        raise KernelUnavailable(f"{op}: impl='cuda' needs CUDA tensors (use impl='reference' on the CPU)")
    if (op, "cuda") in _broken:
        raise KernelUnavailable(f"{op}: the CUDA build failed earlier in this process: {_broken[(op, 'cuda')]}")
    return impl


def mark_broken(op: str, impl: str, err: BaseException) -> None:
    """Record a failed build or compile, warning once; auto never picks (op, impl) again."""
    if (op, impl) not in _broken:
        msg = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
        _broken[(op, impl)] = msg
        warnings.warn(f"hifigan.kernels: {op} impl={impl!r} is unavailable ({msg}); falling back to "
                      "the next implementation for the rest of this process", RuntimeWarning, stacklevel=3)


def run(op: str, impl: str | None, tensors, fast: dict, reference, *args):
    """Call fast[chosen](*args), or reference(*args). Under auto, a fast path that raises while
    building or compiling (it raises KernelUnavailable) is marked broken (one warning) and the
    next choice runs instead. The keys of `fast` are the op's fast impls, in auto's preference."""
    requested = _default if impl is None else impl
    if impl is None and requested not in ("auto", "reference") and requested not in fast:
        requested = "auto"  # a process default naming an impl this op lacks: the op's own best choice
    while True:
        chosen = resolve(op, requested, tensors, tuple(fast))
        if chosen == "reference":
            return reference(*args)
        cast = autocast_args(args)
        if requested != "auto":
            return fast[chosen](*cast)
        try:
            return fast[chosen](*cast)
        except KernelUnavailable as err:
            mark_broken(op, chosen, err)


def autocast_args(args: tuple) -> tuple:
    """Under torch.autocast, a fast kernel's floating-point tensors in the autocast dtype, as autocast hands
    them to the convolutions the kernels replace. A custom autograd Function is not autocast itself: its
    forward would see bf16 activations beside fp32 weights, and its backward (which autocast never covers)
    would mix bf16 gradients with the fp32 weights it saved. The casts are differentiable, so the weights'
    gradients arrive in fp32 as autocast's own casts deliver them."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors:
        return args
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return args
    dtype = torch.get_autocast_dtype(device)
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def launch(kernel, grid, *args, **meta):
    """kernel[grid](*args, **meta), with Triton's own failures (compiling, assembling, no driver)
    turned into KernelUnavailable so that auto can fall back; other errors pass through."""
    try:
        kernel[grid](*args, **meta)
    except Exception as err:
        if type(err).__module__.split(".")[0] == "triton":
            raise KernelUnavailable(f"Triton could not compile or launch {getattr(kernel, '__name__', kernel)}: "
                                    f"{err}") from err
        raise


def dense(x: torch.Tensor) -> torch.Tensor:
    """x itself when its elements fill its storage span without gaps or overlaps (contiguous,
    channels-last or any permutation of them), else a contiguous copy; kernels address such a
    tensor by storage offset and recover each index as (offset // stride) % size."""
    dims = sorted((d for d in range(x.ndim) if x.shape[d] != 1), key=lambda d: x.stride(d))
    expect = 1
    for d in dims:
        if x.stride(d) != expect:
            return x.contiguous()
        expect *= x.shape[d]
    return x
