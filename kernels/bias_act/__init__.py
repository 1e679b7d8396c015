"""Fused bias + activation + gain (+ clamp): y = clamp(act(x + b) * gain, -clamp, clamp).

    from hifigan.kernels.bias_act import bias_act
    y = bias_act(x, b, dim=1, act="lrelu", impl="auto")   # "reference" | "triton" | "cuda"

Activations: linear, relu, lrelu (slope alpha), tanh, sigmoid, silu; gain None = the activation's
default (sqrt 2 for relu / lrelu). Forward, backward and double backward in every impl, for fp32,
bf16 and fp16, contiguous or channels-last. impl=None uses the process default (dispatch.set_default_impl).
"""
from __future__ import annotations

from .. import dispatch
from .reference import ACTIVATIONS, bias_act_lean, bias_act_reference, check_activation

__all__ = ["ACTIVATIONS", "bias_act", "bias_act_reference", "check_activation"]


def _triton(*args):
    from .triton_impl import bias_act as fn
    return fn(*args)


def _cuda(*args):
    from .cuda_impl import bias_act as fn
    return fn(*args)


def bias_act(x, b=None, dim: int = 1, act: str = "linear", alpha: float = 0.2, gain: float | None = None,
             clamp: float | None = None, impl: str | None = None):
    """x [.., C (at dim), ..], b [C] or None -> y, same shape, dtype and memory layout as x."""
    g = ACTIVATIONS[check_activation(act)][1] if gain is None else float(gain)
    return dispatch.run("bias_act", impl, (x, b), {"triton": _triton, "cuda": _cuda}, bias_act_lean,
                        x, b, dim, act, alpha, g, clamp)
