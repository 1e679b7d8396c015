"""Bias + activation + gain (+ clamp): y = clamp(act(x + b) * gain, -clamp, clamp).

The op lives in kernels/bias_act (reference, Triton and CUDA implementations, chosen by `impl`;
see hifigan.kernels.dispatch). This module is the name the layers import it under.
"""
from __future__ import annotations

from hifigan.kernels.bias_act import ACTIVATIONS, bias_act, bias_act_reference, check_activation

__all__ = ["ACTIVATIONS", "bias_act", "bias_act_reference", "check_activation"]
