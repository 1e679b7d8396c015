"""Modulated (and demodulated) convolution with StyleGAN2's up/down-sampling variants.

    from hifigan.kernels.modconv import modulated_conv2d
    y = modulated_conv2d(x, weight, styles, demodulate=True, up=2, resample_filter=f, impl="auto")

impl "reference": one grouped convolution over per-sample weights (fused=True) or the scale-
convolve-scale form (fused=False), in plain PyTorch. impl "triton": implicit-GEMM kernels that
apply the style to the input tile and the demodulation factor to the accumulator, with a Triton
weight-gradient kernel; forward, backward and double backward (see fused.py). There is no CUDA
implementation of this op (impl="cuda" raises).
"""
from __future__ import annotations

from .. import dispatch
from .reference import conv2d_resample, demod_coefficients, down_pads, modulated_conv2d_reference, up_pads

__all__ = ["conv2d_resample", "demod_coefficients", "down_pads", "modulated_conv2d", "modulated_conv2d_reference",
           "up_pads"]


def _triton(*args):
    from .triton_path import modulated_conv2d as fn
    return fn(*args)


def modulated_conv2d(x, weight, styles, demodulate: bool = True, up: int = 1, down: int = 1,
                     resample_filter=None, fused: bool = True, impl: str | None = None):
    """x [N, I, H, W], weight [O, I, k, k] (k odd), styles [N, I] -> [N, O, H*up/down, W*up/down].
    `fused` only chooses between the reference's two evaluations."""
    if x.ndim != 4 or weight.ndim != 4 or styles.shape != (x.shape[0], x.shape[1]) or weight.shape[1] != x.shape[1]:
        raise ValueError(f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and styles "
                         f"{tuple(styles.shape)} do not fit together (need [N, I, H, W], [O, I, k, k], [N, I])")
    if (up, down) not in ((1, 1), (2, 1), (1, 2)) or ((up, down) != (1, 1) and resample_filter is None):
        raise ValueError(f"modulated_conv2d: up={up}, down={down} is not supported (use 1 or 2, one at a time, "
                         "with a resample_filter)")
    return dispatch.run("modconv", impl, (x, weight, styles), {"triton": _triton}, modulated_conv2d_reference,
                        x, weight, styles, demodulate, up, down, resample_filter, fused)
