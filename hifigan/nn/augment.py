"""Adaptive discriminator augmentation: the differentiable augmentation pipeline of ADA (Karras et al.
2020, "Training Generative Adversarial Networks with Limited Data", arXiv:2006.06676, appendix B).

Every image D sees (real or fake) goes through the same random, differentiable transforms; each one
is applied to each sample independently with probability p * strength. In order:
  geometric  xflip, rotate90, xint (integer translation), isotropic scale, pre-rotation, anisotropic
             scale, post-rotation, xfrac (fractional translation): composed into ONE inverse homogeneous
             3x3 matrix per sample (output pixel -> input pixel, centered pixel units). Samples with only
             integer transforms are blitted exactly by a gather; the others are reflect-padded, 2x
             upsampled with the symlet-6 low-pass, bilinearly sampled, 2x downsampled with the same
             (time-reversed) filter. Up followed by down is the identity for an orthogonal wavelet.
             The reflection is the batch's largest need, capped at a quarter of the image (+ the filter's
             margin) a side; the rare samples that reach further see grid_sample's mirror of the
             upsampled image (no empty area either; the seam between the two mirrors is about a pixel
             off). Resampling is polyphase through upfirdn2d (the Triton kernel on CUDA).
  color      brightness, contrast, luma flip, hue rotation, saturation: ONE 4x4 matrix per sample acting
             on homogeneous RGB around the origin (mid-gray of [-1, 1]), as in the paper.
             One channel (C == 1, and any C != 3): the image is the gray RGB (g, g, g); brightness adds
             b, contrast multiplies by c, luma flip negates (the luma axis is the gray axis), and hue and
             saturation act orthogonally to the gray axis, so they are exactly the identity.
  image      image-space filtering (4 frequency bands), additive noise, cutout.
The rotation pair uses probability 1 - sqrt(1 - p * strength) each, so that some rotation happens with
probability p * strength. All randomness comes from the caller's Randomness: one rand(K) and one
randn(K2) per call, plus randn(C, H, W) when noise is enabled, whatever p is (exact replay and resume).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.diffaugment import DiffAugment, NoAugment
from hifigan.nn.fir import upfirdn2d
from hifigan.schema import bounded

# The symlet-6 scaling (decomposition low-pass) filter: Daubechies 1992, "Ten Lectures on Wavelets",
# sec. 8.1, as tabulated by PyWavelets (pywt.Wavelet("sym6").dec_lo). tests/test_augment.py checks that
# it is orthonormal (sum sqrt(2), unit norm, orthogonal to its even shifts) with 6 vanishing moments.
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)
# The symlet-2 (= Daubechies-2) scaling filter, same source; its autocorrelation is the half-band
# filter the image-space filter bank is built from.
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314453416)

# Columns of the two draws per call. Gates are uniform draws compared with p * strength.
_GATES = ("xflip", "rotate90", "xint", "scale", "rotate_pre", "aniso", "rotate_post", "xfrac",
          "brightness", "contrast", "lumaflip", "hue", "saturation", "band0", "band1", "band2", "band3",
          "noise", "cutout")
_UNIFORM = _GATES + ("xflip_v", "rotate90_v", "xint_x", "xint_y", "rotate_pre_v", "rotate_post_v",
                     "lumaflip_v", "hue_v", "cutout_x", "cutout_y")
_NORMAL = ("scale", "aniso", "xfrac_x", "xfrac_y", "brightness", "contrast", "saturation",
           "band0", "band1", "band2", "band3", "noise")
_U = {k: i for i, k in enumerate(_UNIFORM)}
_Z = {k: i for i, k in enumerate(_NORMAL)}
BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)  # expected share of a 1/f image's power per band, low to high


# ----------------------------------------------------------------------------------------------
# Small helpers

def _mat3(a, b, c, d, e, f):
    """Per-sample [[a, b, c], [d, e, f], [0, 0, 1]] from [n] tensors."""
    z, o = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, z, z, o], 1).reshape(-1, 3, 3)


def _scale2(sx, sy):
    z = torch.zeros_like(sx)
    return _mat3(sx, z, z, z, sy, z)


def _translate2(tx, ty):
    z, o = torch.zeros_like(tx), torch.ones_like(tx)
    return _mat3(o, z, tx, z, o, ty)


def _rotate2(cos, sin):
    """Rotation by theta given cos(theta), sin(theta)."""
    z = torch.zeros_like(cos)
    return _mat3(cos, -sin, z, sin, cos, z)


def reflect_index(lo: int, hi: int, size: int, device) -> torch.Tensor:
    """Indices of positions -lo .. size + hi - 1 mirrored into [0, size) without repeating the edge
    (F.pad's "reflect", but for any amount of padding)."""
    i = torch.arange(-lo, size + hi, device=device)
    if size == 1:
        return torch.zeros_like(i)
    period = 2 * (size - 1)
    i = i.remainder(period)
    return torch.where(i >= size, period - i, i)


def reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H + top + bottom, W + left + right], mirrored at the edges."""
    H, W = x.shape[-2:]
    x = x.index_select(3, reflect_index(left, right, W, x.device))
    return x.index_select(2, reflect_index(top, bottom, H, x.device))


# ----------------------------------------------------------------------------------------------
# grid_sample with a twice-differentiable input gradient (R1 differentiates D(aug(x)) w.r.t. x and
# backpropagates through that gradient). The grid is constant; the op is linear in the input, so its
# input-gradient is the adjoint, whose own derivative is the forward op again. (Recent PyTorch
# differentiates grid_sampler_2d_backward itself; the torch >= 2.3 that setup.py allows does not, and
# this also skips the grid's gradient.)

_PADDING = {"zeros": 0, "border": 1, "reflection": 2}


class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grid, padding_mode):
        ctx.save_for_backward(grid)
        ctx.x_shape, ctx.padding_mode = x.shape, padding_mode
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)

    @staticmethod
    def backward(ctx, gy):
        grid, = ctx.saved_tensors
        return _GridSampleAdjoint.apply(gy, grid, ctx.x_shape, ctx.padding_mode), None, None


class _GridSampleAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gy, grid, x_shape, padding_mode):
        ctx.save_for_backward(grid)
        ctx.padding_mode = padding_mode
        x = gy.new_zeros(()).expand(x_shape)  # only its shape is read
        gx, _ = torch.ops.aten.grid_sampler_2d_backward(gy, x, grid, 0, _PADDING[padding_mode], False,
                                                         (True, False))
        return gx

    @staticmethod
    def backward(ctx, ggx):
        grid, = ctx.saved_tensors
        return _GridSample.apply(ggx, grid, ctx.padding_mode), None, None, None


def grid_sample(x: torch.Tensor, grid: torch.Tensor, padding_mode: str = "reflection") -> torch.Tensor:
    """Bilinear F.grid_sample (align_corners=False), differentiable any number of times w.r.t. x (not grid)."""
    return _GridSample.apply(x, grid.detach(), padding_mode)


# ----------------------------------------------------------------------------------------------
# Applying the transforms (module-level so tests can call them with known matrices)

def resample(x: torch.Tensor, G_inv: torch.Tensor, f: torch.Tensor, pads=None) -> torch.Tensor:
    """x [m, C, H, W] resampled at G_inv @ (output pixel), centered pixel coordinates, G_inv [m, 3, 3];
    f: the 1-D low-pass (sum 1). pads (left, right, top, bottom) of reflection, default: enough for G_inv."""
    m, C, H, W = x.shape
    L = f.numel()  # even; the upsampled image loses L/2 samples a side to the zero padding of the filter
    if pads is None:
        pads = geometric_pads(G_inv, H, W, L).amax(0).tolist()
    # beyond a quarter of the image a side, grid_sample mirrors the upsampled image instead (no empty area
    # either; the seam between the two mirrors is a pixel off, a cheap price for 2x less upsampling)
    pl, pr, pt, pb = (min(int(v), s // 4 + L // 4 + 1) for v, s in zip(pads, (W, W, H, H)))
    x = reflect_pad(x, pl, pr, pt, pb)
    # 2x upsample of the padded image, less the L/2 upsampled samples a side that would see zero padding
    # (upsampled sample k of the result sits at input pixel k/2 + L/4 + 1/4 of the padded image)
    f = f.to(x.dtype)
    x = _upsample_valid(_upsample_valid(x, f, 3), f, 2)
    Hy, Wy = x.shape[-2:]
    # sample a 2x grid extended by L/2 - 1 samples a side, so that a valid downsampling returns H x W
    Ho, Wo = 2 * H + L - 2, 2 * W + L - 2
    mdt = torch.float64 if x.dtype == torch.float64 else torch.float32  # matrices: float64 for gradcheck
    S_in = torch.tensor([[4 / Wy, 0, 2 * (pl - pr) / Wy], [0, 4 / Hy, 2 * (pt - pb) / Hy], [0, 0, 1]],
                        device=x.device, dtype=mdt)  # centered input pixels -> grid_sample's [-1, 1] on the upsampled image
    S_out = torch.tensor([[Wo / 4, 0, 0], [0, Ho / 4, 0], [0, 0, 1]], device=x.device, dtype=mdt)  # affine_grid's [-1, 1] -> output pixels
    # f is not symmetric: its centroid sits d input pixels off the half-sample point assumed above. The
    # upsampled image and the output grid are both d off; shifting G_inv's frame by d keeps PR for the
    # identity and puts flipped / rotated samples where they belong.
    k = torch.arange(L, dtype=torch.float64)
    d = float(((L - 1) / 2 - (f.double().cpu() * k).sum() / f.double().sum()) / 2)
    Td, Tm = (torch.tensor([[1, 0, s * d], [0, 1, s * d], [0, 0, 1]], device=x.device, dtype=mdt) for s in (1, -1))
    theta = (S_in @ Tm @ G_inv.to(mdt) @ Td @ S_out)[:, :2].to(x.dtype)
    grid = F.affine_grid(theta, [m, C, Ho, Wo], align_corners=False)
    x = grid_sample(x, grid)
    return _downsample_valid(_downsample_valid(x, f, 3), f, 2)


def _taps(f: torch.Tensor, dim: int) -> torch.Tensor:
    return f[None, :] if dim == 3 else f[:, None]


def _upsample_valid(x: torch.Tensor, f: torch.Tensor, dim: int) -> torch.Tensor:
    """2x upsampling along `dim` (2 or 3) by zero insertion and convolution with 2f, keeping only the
    2 * size - L outputs that see no padding; computed polyphase (two L/2-tap filters on the input)."""
    L = f.numel()
    even = upfirdn2d(x, _taps(2 * f[1::2], dim))  # outputs 2j
    odd = upfirdn2d(x.narrow(dim, 1, x.shape[dim] - 1), _taps(2 * f[0::2], dim))  # outputs 2j + 1
    even = even.narrow(dim, 0, odd.shape[dim])
    y = torch.stack([even, odd], dim + 1)
    shape = list(x.shape)
    shape[dim] = 2 * x.shape[dim] - L
    return y.reshape(shape)


def _downsample_valid(x: torch.Tensor, f: torch.Tensor, dim: int) -> torch.Tensor:
    """z[m] = sum_t f[t] x[2m + t] along `dim` (the time-reversed filter: the adjoint of the upsampling,
    so that down(up(x)) = x for an orthogonal wavelet's f); polyphase on the even and odd samples."""
    n = x.shape[dim] // 2
    ph = x.narrow(dim, 0, 2 * n).unflatten(dim, (n, 2))
    return (upfirdn2d(ph.select(dim + 1, 0), _taps(f[0::2].flip(0), dim))
            + upfirdn2d(ph.select(dim + 1, 1), _taps(f[1::2].flip(0), dim)))


def geometric_pads(G_inv: torch.Tensor, H: int, W: int, L: int) -> torch.Tensor:
    """[m, 4] reflection (left, right, top, bottom) each sample needs so that `resample` never samples
    the filter's zero-padded border: the corners of the output (plus the downsampling margin) mapped back."""
    hx, hy = (2 * W + L - 2) / 4, (2 * H + L - 2) / 4  # the extended output grid's corners
    corners = torch.tensor([[-hx, -hx, hx, hx], [-hy, hy, -hy, hy], [1, 1, 1, 1]], device=G_inv.device)
    p = G_inv.float() @ corners  # [m, 3, 4] input positions, centered pixel units
    lo, hi = p[:, :2].amin(2), p[:, :2].amax(2)  # [m, 2]
    half = torch.tensor([W / 2, H / 2], device=G_inv.device)
    m = L / 4 + 0.5  # the upsampled image starts L/4 input pixels in, and bilinear reads half a pixel around
    need_lo, need_hi = (m - (lo + half)).ceil(), (hi + half - 2 * half + m).ceil()
    return torch.stack([need_lo[:, 0], need_hi[:, 0], need_lo[:, 1], need_hi[:, 1]], 1).clamp(min=0)


def blit(x: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
    """Exact resampling for integer-valued G_inv (flips, quarter turns, integer shifts): a gather with
    mirrored edges, equal to `resample` for those matrices."""
    m, C, H, W = x.shape
    dev = x.device
    gx = torch.arange(W, device=dev, dtype=torch.float32) + 0.5 - W / 2
    gy = torch.arange(H, device=dev, dtype=torch.float32) + 0.5 - H / 2
    q = torch.stack([gx.repeat(H), gy.repeat_interleave(W), torch.ones(H * W, device=dev)])  # [3, HW]
    p = G_inv.float() @ q  # [m, 3, HW]
    sx = (p[:, 0] + W / 2 - 0.5).round().long()
    sy = (p[:, 1] + H / 2 - 0.5).round().long()
    sx, sy = _mirror(sx, W), _mirror(sy, H)
    idx = (sy * W + sx)[:, None].expand(m, C, H * W)
    return x.reshape(m, C, H * W).gather(2, idx).reshape(m, C, H, W)


def _mirror(i: torch.Tensor, size: int) -> torch.Tensor:
    if size == 1:
        return torch.zeros_like(i)
    period = 2 * (size - 1)
    i = i.remainder(period)
    return torch.where(i >= size, period - i, i)


def apply_color(x: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """x [m, C, H, W], M [m, 4, 4] homogeneous RGB. C == 3: the full matrix; otherwise each channel is
    treated as a gray (g, g, g) and the result is the mean of the output RGB (brightness, contrast and
    luma flip act; hue and saturation are the identity on gray)."""
    m, C, H, W = x.shape
    M = M.to(x.dtype)
    if C == 3:
        y = torch.baddbmm(M[:, :3, 3:], M[:, :3, :3], x.reshape(m, 3, H * W))
        return y.reshape(m, C, H, W)
    a = M[:, :3, :3].sum(2).mean(1)  # gain of the gray axis
    b = M[:, :3, 3].mean(1)
    return x * a[:, None, None, None] + b[:, None, None, None]


def band_filters() -> torch.Tensor:
    """[4, 43] zero-phase filters splitting [0, pi] into [0, pi/8], [pi/8, pi/4], [pi/4, pi/2], [pi/2, pi];
    they sum to a unit impulse. Built from the half-band filter a = sym2 * reversed(sym2) / 2 cascaded
    with its 2x and 4x dilations (lowpasses at pi/2, pi/4, pi/8)."""
    def conv(f, g):  # full 1-D convolution
        return F.conv1d(f[None, None], g.flip(0)[None, None], padding=g.numel() - 1)[0, 0]

    h = torch.tensor(SYM2, dtype=torch.float64)
    a = conv(h, h.flip(0)) / 2

    def dilate(f, k):
        out = torch.zeros((f.numel() - 1) * k + 1, dtype=f.dtype)
        out[::k] = f
        return out

    l1 = a
    l2 = conv(l1, dilate(a, 2))
    l3 = conv(l2, dilate(a, 4))
    size = l3.numel()

    def centered(f):
        out = torch.zeros(size, dtype=f.dtype)
        s = (size - f.numel()) // 2
        out[s:s + f.numel()] = f
        return out

    delta = centered(torch.ones(1, dtype=torch.float64))
    L1, L2, L3 = centered(l1), centered(l2), l3
    return torch.stack([L3, L2 - L3, L1 - L2, delta - L1]).float()


# ----------------------------------------------------------------------------------------------
# The pipeline

class _Draws:
    """One call's draws: u [n, len(_UNIFORM)] uniform, z [n, len(_NORMAL)] normal."""

    def __init__(self, rand, device):
        self.u = rand.rand(len(_UNIFORM)).to(device, torch.float32)
        self.z = rand.randn(len(_NORMAL)).to(device, torch.float32)

    def gate(self, name: str, prob) -> torch.Tensor:  # [n] bool: apply this transform to this sample
        return self.u[:, _U[name]] < prob

    def uni(self, name: str) -> torch.Tensor:
        return self.u[:, _U[name]]

    def sym(self, name: str) -> torch.Tensor:  # uniform in [-1, 1)
        return self.u[:, _U[name]] * 2 - 1

    def normal(self, name: str) -> torch.Tensor:
        return self.z[:, _Z[name]]


class AdaAugment(nn.Module):
    """images [N, C, H, W] -> augmented images, the same shape; each transform applied to each sample
    with probability p * strength (p: the `p` buffer, set by the caller)."""

    @dataclass(kw_only=True)
    class Config:
        xflip: float = bounded(1.0, ge=0)          # x-flip probability multiplier (0 disables, 1 = on)
        rotate90: float = bounded(1.0, ge=0)       # quarter-turn rotation
        xint: float = bounded(1.0, ge=0)           # integer translation
        scale: float = bounded(1.0, ge=0)          # isotropic scaling
        rotate: float = bounded(1.0, ge=0)         # arbitrary rotation (a pre and a post rotation)
        aniso: float = bounded(1.0, ge=0)          # anisotropic scaling
        xfrac: float = bounded(1.0, ge=0)          # fractional translation
        brightness: float = bounded(1.0, ge=0)     # additive brightness
        contrast: float = bounded(1.0, ge=0)       # contrast (scaling around mid-gray)
        lumaflip: float = bounded(1.0, ge=0)       # luma flip (reflection of the gray axis)
        hue: float = bounded(1.0, ge=0)            # hue rotation (about the gray axis)
        saturation: float = bounded(1.0, ge=0)     # saturation
        imgfilter: float = bounded(0.0, ge=0)      # image-space filtering (off in the paper's 'bgc')
        noise: float = bounded(0.0, ge=0)          # additive Gaussian noise (off in 'bgc')
        cutout: float = bounded(0.0, ge=0)         # cutout (off in 'bgc')
        xint_max: float = bounded(0.125, ge=0, le=1)      # integer translation range, fraction of the image size
        scale_std: float = bounded(0.2, ge=0, le=4)       # log2 std of isotropic scaling
        rotate_max: float = bounded(1.0, ge=0, le=1)      # rotation range, in units of pi
        aniso_std: float = bounded(0.2, ge=0, le=4)       # log2 std of anisotropic scaling
        xfrac_std: float = bounded(0.125, ge=0, le=1)     # std of fractional translation, fraction of the image size
        brightness_std: float = bounded(0.2, ge=0, le=10)  # std of the added brightness
        contrast_std: float = bounded(0.5, ge=0, le=4)    # log2 std of contrast
        hue_max: float = bounded(1.0, ge=0, le=1)         # hue rotation range, in units of pi
        saturation_std: float = bounded(1.0, ge=0, le=4)  # log2 std of saturation
        imgfilter_bands: tuple[float, float, float, float] = bounded((1.0, 1.0, 1.0, 1.0), ge=0)  # per-band multipliers, low to high
        imgfilter_std: float = bounded(1.0, ge=0, le=4)   # log2 std of a band's gain
        noise_std: float = bounded(0.1, ge=0, le=10)      # std of the noise's std (half-normal)
        cutout_size: float = bounded(0.5, ge=0, le=1)     # cutout square side, fraction of the image size

    def __init__(self, cfg: Config | None = None):
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else self.Config()
        self.register_buffer("p", torch.zeros([]))
        self.register_buffer("f_geom", torch.tensor(SYM6) / sum(SYM6), persistent=False)
        self.register_buffer("f_bands", band_filters(), persistent=False)

    def forward(self, images: torch.Tensor, rand) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"AdaAugment: images must be [N, C, H, W], got shape {tuple(images.shape)}")
        n, C, H, W = images.shape
        if rand.size != n:
            raise ValueError(f"AdaAugment: the Randomness is for {rand.size} samples but images has {n}")
        d = _Draws(rand, images.device)
        noise = rand.randn(C, H, W).to(images.device, images.dtype) if self.cfg.noise > 0 else None
        if float(self.p) == 0:  # the common case early in training: the draws are made, nothing else
            return images
        p = self.p.to(images.device, torch.float32)
        G, frac, integer = self.geometric(d, p, H, W)
        M, color = self.color(d, p)
        gains, filt = self.band_gains(d, p)
        sigma, noisy = self.noise_sigma(d, p)
        box, cut = self.cutout_box(d, p)
        L = self.f_geom.numel()
        pads = torch.where(frac[:, None], geometric_pads(G, H, W, L), 0.0)
        # the one host sync of a call: which samples need which stage, and the padding
        flags = torch.stack([frac, integer, color, filt, noisy, cut], 1).float()
        host = torch.cat([flags, pads], 1).cpu()
        which = [host[:, i].nonzero()[:, 0] for i in range(6)]
        if sum(len(w) for w in which) == 0:
            return images

        x = images
        if len(which[0]):
            x = self._per_sample(x, which[0], lambda xs, i: resample(xs, G[i], self.f_geom, host[:, 6:].amax(0)))
        if len(which[1]):
            x = self._per_sample(x, which[1], lambda xs, i: blit(xs, G[i]))
        if len(which[2]):
            x = apply_color(x, M)
        if len(which[3]):
            x = self._per_sample(x, which[3], lambda xs, i: self._filter(xs, gains[i]))
        if noise is not None and len(which[4]):
            x = x + noise * sigma[:, None, None, None].to(x.dtype)
        if len(which[5]):
            x = x * self._cutout_mask(box, H, W).to(x.dtype)
        return x

    @staticmethod
    def _per_sample(x, idx, fn):
        """fn on the samples `idx` only (all of them: no copy)."""
        if len(idx) == x.shape[0]:
            return fn(x, slice(None))
        idx = idx.to(x.device)
        return x.index_copy(0, idx, fn(x.index_select(0, idx), idx))

    # -- parameters from the draws (tiny [n] tensors) ------------------------------------------
    def geometric(self, d: _Draws, p, H: int, W: int):
        """(G_inv [n, 3, 3] output pixel -> input pixel, frac [n] needs resampling, integer [n] needs a blit)."""
        cfg = self.cfg
        one = torch.ones_like(d.u[:, 0])
        mats = []
        g_flip = d.gate("xflip", p * cfg.xflip) & (d.uni("xflip_v") >= 0.5)
        mats.append(_scale2(1 - 2 * g_flip.float(), one))
        k = (d.uni("rotate90_v") * 4).floor().long().clamp(max=3) * d.gate("rotate90", p * cfg.rotate90)
        cos, sin = one.new_tensor([1, 0, -1, 0])[k], one.new_tensor([0, 1, 0, -1])[k]
        mats.append(_rotate2(cos, -sin))  # inverse of a k quarter-turn rotation
        g = d.gate("xint", p * cfg.xint)
        tx = (d.sym("xint_x") * cfg.xint_max * W).round() * g
        ty = (d.sym("xint_y") * cfg.xint_max * H).round() * g
        mats.append(_translate2(-tx, -ty))
        integer = g_flip | (k != 0) | (tx != 0) | (ty != 0)

        s = torch.where(d.gate("scale", p * cfg.scale), torch.exp2(d.normal("scale") * cfg.scale_std), one)
        mats.append(_scale2(1 / s, 1 / s))
        p_rot = 1 - torch.sqrt((1 - p * cfg.rotate).clamp(min=0))
        th0 = d.sym("rotate_pre_v") * math.pi * cfg.rotate_max * d.gate("rotate_pre", p_rot)
        mats.append(_rotate2(th0.cos(), -th0.sin()))
        a = torch.where(d.gate("aniso", p * cfg.aniso), torch.exp2(d.normal("aniso") * cfg.aniso_std), one)
        mats.append(_scale2(1 / a, a))
        th1 = d.sym("rotate_post_v") * math.pi * cfg.rotate_max * d.gate("rotate_post", p_rot)
        mats.append(_rotate2(th1.cos(), -th1.sin()))
        g = d.gate("xfrac", p * cfg.xfrac)
        fx, fy = d.normal("xfrac_x") * cfg.xfrac_std * W * g, d.normal("xfrac_y") * cfg.xfrac_std * H * g
        mats.append(_translate2(-fx, -fy))
        frac = (s != 1) | (th0 != 0) | (a != 1) | (th1 != 0) | (fx != 0) | (fy != 0)

        G = mats[0]
        for T in mats[1:]:
            G = G @ T
        return G, frac, integer & ~frac

    def color(self, d: _Draws, p):
        """(M [n, 4, 4] acting on homogeneous RGB, changed [n])."""
        cfg = self.cfg
        n, dev = d.u.shape[0], d.u.device
        I = torch.eye(4, device=dev).expand(n, 4, 4)
        v = torch.tensor([1, 1, 1, 0], device=dev, dtype=torch.float32) / math.sqrt(3)  # the luma (gray) axis
        vv = torch.outer(v, v)
        b = d.normal("brightness") * cfg.brightness_std * d.gate("brightness", p * cfg.brightness)
        M = I.clone()
        M[:, :3, 3] = b[:, None]
        c = torch.where(d.gate("contrast", p * cfg.contrast), torch.exp2(d.normal("contrast") * cfg.contrast_std),
                        torch.ones_like(b))
        M = _scale4(c) @ M
        flip = d.gate("lumaflip", p * cfg.lumaflip) & (d.uni("lumaflip_v") >= 0.5)
        M = (I - 2 * vv * flip.float()[:, None, None]) @ M  # Householder reflection of the luma axis
        th = d.sym("hue_v") * math.pi * cfg.hue_max * d.gate("hue", p * cfg.hue)
        M = _rotate_about(v, th) @ M
        s = torch.where(d.gate("saturation", p * cfg.saturation),
                        torch.exp2(d.normal("saturation") * cfg.saturation_std), torch.ones_like(b))
        M = (vv + (I - vv) * s[:, None, None]) @ M
        changed = (b != 0) | (c != 1) | flip | (th != 0) | (s != 1)
        return M, changed

    def band_gains(self, d: _Draws, p):
        """(gains [n, 4] of the frequency bands, normalized to keep a 1/f image's expected power, changed [n])."""
        cfg = self.cfg
        t, on = [], []
        for i, band in enumerate(cfg.imgfilter_bands):
            g = d.gate(f"band{i}", p * cfg.imgfilter * band)
            t.append(torch.where(g, torch.exp2(d.normal(f"band{i}") * cfg.imgfilter_std), torch.ones_like(p)))
            on.append(g)
        t = torch.stack(t, 1)
        w = torch.tensor(BAND_POWER, device=t.device)
        return t / (t.square() * w).sum(1, keepdim=True).sqrt(), torch.stack(on, 1).any(1)

    def noise_sigma(self, d: _Draws, p):
        """(sigma [n] of the added noise, changed [n])."""
        g = d.gate("noise", p * self.cfg.noise)
        sigma = d.normal("noise").abs() * self.cfg.noise_std * g
        return sigma, sigma != 0

    def cutout_box(self, d: _Draws, p):
        """(box [n, 3]: center x, y and side as fractions of the image, changed [n])."""
        g = d.gate("cutout", p * self.cfg.cutout)
        side = self.cfg.cutout_size * g.float()
        return torch.stack([d.uni("cutout_x"), d.uni("cutout_y"), side], 1), side > 0

    # -- image-space stages ----------------------------------------------------------------------
    def _filter(self, x, gains):
        """x [m, C, H, W] filtered separably with each sample's 1-D filter sum_b gains[b] * band_b."""
        m, C, H, W = x.shape
        h = (gains.to(self.f_bands.dtype) @ self.f_bands).to(x.dtype)  # [m, taps]
        r = h.shape[1] // 2
        w = h[:, None, :].expand(m, C, -1).reshape(m * C, 1, 1, -1)
        x = reflect_pad(x, r, r, r, r).reshape(1, m * C, H + 2 * r, W + 2 * r)
        x = F.conv2d(x, w, groups=m * C)
        x = F.conv2d(x, w.transpose(2, 3), groups=m * C)
        return x.reshape(m, C, H, W)

    @staticmethod
    def _cutout_mask(box, H: int, W: int):
        """[n, 1, H, W]: 0 inside each sample's square, 1 outside (everywhere when its side is 0)."""
        cx = (torch.arange(W, device=box.device) + 0.5) / W
        cy = (torch.arange(H, device=box.device) + 0.5) / H
        half = box[:, 2, None] / 2
        out_x = (cx[None] - box[:, 0, None]).abs() >= half  # [n, W]
        out_y = (cy[None] - box[:, 1, None]).abs() >= half  # [n, H]
        return (out_x[:, None, None, :] | out_y[:, None, :, None]).float()


def _scale4(c):
    n = c.shape[0]
    M = torch.eye(4, device=c.device).repeat(n, 1, 1)
    M[:, 0, 0] = M[:, 1, 1] = M[:, 2, 2] = c
    return M


def _rotate_about(v, theta):
    """[n, 4, 4] rotation by theta about the unit axis v[:3] (Rodrigues)."""
    a = v[:3]
    K = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], device=v.device)
    c, s = theta.cos()[:, None, None], theta.sin()[:, None, None]
    R = c * torch.eye(3, device=v.device) + s * K + (1 - c) * torch.outer(a, a)
    M = torch.eye(4, device=v.device).repeat(theta.shape[0], 1, 1)
    M[:, :3, :3] = R
    return M


AUGMENT_POLICIES = {"none": NoAugment, "ada": AdaAugment, "diffaugment": DiffAugment}
