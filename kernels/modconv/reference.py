"""Modulated convolution reference (Karras et al. 2020, "Analyzing and Improving the Image Quality
of StyleGAN", arXiv:1912.04958, section 2.2), in plain PyTorch: the specification and the test oracle.

Per sample n, the shared weight w[o, i, k, k] is scaled by the style s_n[i] (modulation, which
replaces AdaIN's scaling) and each output filter is renormalized to unit L2 norm (demodulation,
which replaces instance normalization): w'_n = s_n * w, w''_n[o] = w'_n[o] / sqrt(sum_{i,k} w'_n[o, i, k]^2 + eps).
Two equivalent evaluations:
  fused: one grouped convolution over N per-sample weight tensors (memory N x |w|);
  not fused: scale the input channels by s, convolve with the shared w, scale the output channels
  by the demodulation factor (no per-sample weights; the factor depends only on s and w).
conv2d_resample is the same-size k x k convolution fused with StyleGAN2's 2x FIR resampling.
"""
from __future__ import annotations

import math

import torch

from ..conv2d import conv2d
from ..upfirdn2d import upfirdn2d


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    groups: int = 1, impl: str | None = None) -> torch.Tensor:
    """Same-size k x k convolution fused with 2x FIR resampling, as StyleGAN2's layers use it.

    up=2: a stride-2 transposed convolution (the zero-inserting upsample and the convolution in
    one op) followed by the filter, padded so the output is exactly 2H x 2W.
    down=2: the filter first (anti-aliasing), padded so that a stride-2 valid convolution gives H/2.
    w [O, I/groups, k, k]. Without resampling: a plain same-padded convolution (a correlation, as
    torch's conv2d). With up=2 the kernel is applied as the transposed convolution's own weight, the
    orientation of StyleGAN2-ADA's weights (its `flip_weight=False`): the result equals
    conv2d(upsample2d(x, f), w.flip([2, 3]), padding=k//2), a true convolution with w, away from a
    one-pixel border (the fused form does not zero the upsampled image beyond its edge before
    convolving), so official up-sampling weights load without a flip. `impl` picks the filter's and the
    convolution's implementation (kernels/upfirdn2d, kernels/conv2d).
    """
    k = w.shape[-1]
    cimpl = None if impl == "triton" else impl  # the convolution has no Triton impl (cuDNN is its fast path)
    fimpl = None if impl == "cuda" else impl    # the filter has no CUDA impl
    if up == 1 and down == 1:
        return conv2d(x, w, padding=k // 2, groups=groups, impl=cimpl)
    if up == 2:
        O, Ig = w.shape[:2]
        wt = w.reshape(groups, O // groups, Ig, k, k).transpose(1, 2).reshape(groups * Ig, O // groups, k, k)
        x = conv2d(x, wt, stride=2, groups=groups, transposed=True, impl=cimpl)  # [.., 2H + k - 2, ..]
        return upfirdn2d(x, f, pad=up_pads(f.shape[-1], k), gain=4, impl=fimpl)
    if down == 2:
        x = upfirdn2d(x, f, pad=down_pads(f.shape[-1], k), impl=fimpl)
        return conv2d(x, w, stride=2, groups=groups, impl=cimpl)
    raise ValueError(f"conv2d_resample supports up=2 or down=2, got up={up}, down={down}")


def up_pads(fw: int, k: int) -> tuple[int, int, int, int]:
    """Filter pads that bring a stride-2 transposed conv's 2H + k - 2 back to 2H, each input pixel
    centred on its 2 x 2 cell."""
    p = fw - k + 1
    return ((p + 1) // 2, p // 2, (p + 1) // 2, p // 2)


def down_pads(fw: int, k: int) -> tuple[int, int, int, int]:
    """Filter pads after which a stride-2 valid k x k convolution gives H/2."""
    p = (fw - 2) + (k - 1)
    return ((p + 1) // 2, p // 2, (p + 1) // 2, p // 2)


def demod_coefficients(weight: torch.Tensor, styles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """[N, O]: 1 / ||s_n * w[o]||, computed without materializing the per-sample weights."""
    return (styles.square() @ weight.square().sum([2, 3]).t() + eps).rsqrt()


def prepare(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool):
    """Weight and styles in x's dtype, and the demodulation factor [N, O] (None without). For fp16 the
    weight and styles are first scaled to at most 1 / sqrt(fan-in) and 1 so that the products stay
    in range; demodulation divides any such scale out again."""
    I, k = weight.shape[1], weight.shape[-1]
    w = weight.to(x.dtype)
    s = styles.to(x.dtype)
    if x.dtype == torch.float16 and demodulate:
        w = w * (1 / math.sqrt(I * k * k) / w.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        s = s / s.norm(float("inf"), dim=1, keepdim=True)
    acc = torch.promote_types(x.dtype, torch.float32)  # fp32 at least (fp16 squares underflow)
    d = demod_coefficients(w.to(acc), s.to(acc)).to(x.dtype) if demodulate else None  # [N, O]
    return w, s, d


def modulated_conv2d_reference(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                               up: int = 1, down: int = 1, resample_filter: torch.Tensor | None = None,
                               fused: bool = True) -> torch.Tensor:
    """x [N, I, H, W], weight [O, I, k, k], styles [N, I] -> [N, O, H*up/down, W*up/down]."""
    N, I, H, W = x.shape
    O, _, k, _ = weight.shape
    w, s, d = prepare(x, weight, styles, demodulate)
    if not fused:
        x = x * s[:, :, None, None]
        x = conv2d_resample(x, w, resample_filter, up=up, down=down, impl="reference")
        return x * d[:, :, None, None] if d is not None else x
    wi = w[None] * s[:, None, :, None, None]  # [N, O, I, k, k]
    if d is not None:
        wi = wi * d[:, :, None, None, None]
    x = conv2d_resample(x.reshape(1, N * I, H, W), wi.reshape(N * O, I, k, k), resample_filter,
                        up=up, down=down, groups=N, impl="reference")
    return x.reshape(N, O, *x.shape[2:])
