"""The terms a projection minimizes: masked pixel MSE, perceptual distances, and the noise-map penalty.

- Pixel MSE over the known pixels (Image2StyleGAN++, Abdal et al. 2020, arXiv:1911.11544, eq. 1:
  ||M_s * (G(w, n) - x)||^2 / N with N the number of known pixel values).
- Perceptual: any callable `perceptual(img, target) -> [N]`. `vgg_feature_loss` builds the
  Image2StyleGAN one (Abdal et al. 2019, arXiv:1904.03189, eq. 2: the mean squared difference of
  VGG-16 conv1_1, conv1_2, conv3_2 and conv4_2 activations, summed over the layers); `lpips_loss`
  wraps LPIPS (Zhang et al. 2018, arXiv:1801.03924). With a mask both images are multiplied by it
  first (Image2StyleGAN++'s M_p), so a hidden pixel of the target never reaches the loss.
  Weights come from local files only (hifigan.metrics.vgg); nothing is downloaded.
- Noise regularization (StyleGAN2, Karras et al. 2020, arXiv:1912.04958, appendix D): for every noise
  map and each of its scales down to 8x8 (2x2 average pooling), the squared normalized
  autocorrelation at one-pixel horizontal and vertical shifts (circular), summed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from hifigan.errors import UserError

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (img, target) [N, C, H, W] -> [N]

VGG_LAYERS = ("conv1_1", "conv1_2", "conv3_2", "conv4_2")  # Image2StyleGAN, section 4.2
VGG_MAX_SIDE = 256  # Image2StyleGAN runs VGG on 256x256 images; larger ones are downsampled to it


def masked_mse(img: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[N]: mean of (img - target)^2 over the known pixels (mask [N or 1, 1, H, W] in {0, 1}; None: all)."""
    diff = (img - target) ** 2  # [N, C, H, W]
    if mask is None:
        return diff.flatten(1).mean(1)
    m = mask.expand_as(diff)
    return (diff * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


def apply_mask(perceptual: Perceptual, img: torch.Tensor, target: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
    """perceptual(M * img, M * target): the hidden region is black in both, so it adds nothing."""
    if mask is None:
        return perceptual(img, target)
    return perceptual(img * mask, target * mask)


def to_rgb3(x: torch.Tensor) -> torch.Tensor:
    """[N, 1 or 3, H, W] -> [N, 3, H, W]: a grayscale image repeated over three channels for VGG."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _vgg_size(x: torch.Tensor) -> torch.Tensor:
    side = x.shape[-1]
    if side <= VGG_MAX_SIDE:
        return x
    return F.interpolate(x, size=(VGG_MAX_SIDE, VGG_MAX_SIDE), mode="area")


def _import_vgg():
    try:
        from hifigan.metrics import vgg
    except ImportError:
        raise UserError("perceptual losses need hifigan.metrics.vgg, which this hifigan does not have; "
                        "use --loss mse") from None
    return vgg


def _check_file(path, flag: str, what: str) -> Path:
    if path is None:
        raise UserError(f"{flag} is missing: this loss needs {what} from a local file (nothing is downloaded); "
                        f"give {flag} FILE or use --loss mse")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{flag} {p}: no such file; give the local {what} file")
    return p


def vgg_feature_loss(vgg, layers=VGG_LAYERS, normalize=None) -> Perceptual:
    """Image2StyleGAN's perceptual loss with a VGG16 (hifigan.metrics.vgg): sum over `layers` of the mean
    squared activation difference, per image [N]. Images in [-1, 1], 1 or 3 channels; `normalize` maps
    them to the network's input (default: hifigan.metrics.vgg.imagenet_normalize)."""
    layers = tuple(layers)
    normalize = normalize or _import_vgg().imagenet_normalize

    def loss(img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        both = normalize(_vgg_size(to_rgb3(torch.cat([img, target]))))
        feats = vgg.layer_outputs(both, layers)
        n = img.shape[0]
        return sum(((feats[k][:n] - feats[k][n:]) ** 2).flatten(1).mean(1) for k in layers)
    return loss


def lpips_loss(lpips) -> Perceptual:
    """LPIPS (hifigan.metrics.vgg.LPIPS) as a perceptual loss: [N] distances, 1 or 3 channels."""
    def loss(img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lpips(_vgg_size(to_rgb3(img)), _vgg_size(to_rgb3(target))).reshape(img.shape[0])
    return loss


def load_vgg_loss(vgg_path, device) -> Perceptual:
    """--vgg FILE -> Image2StyleGAN's VGG-16 feature loss, frozen, on `device`."""
    path = _check_file(vgg_path, "--vgg", "VGG-16 weights (torchvision's vgg16-397923af.pth state dict)")
    net = _import_vgg().load_vgg16(path, device)
    if not hasattr(net, "layer_outputs"):
        raise UserError(f"--vgg {path}: a TorchScript VGG has no per-layer outputs for the perceptual loss; give "
                        f"torchvision's vgg16 state dict (vgg16-397923af.pth), or use --loss lpips")
    return vgg_feature_loss(net.eval().requires_grad_(False))


def load_lpips(lpips_path, vgg_path, device, say=print):
    """--vgg FILE (VGG-16 features) + --lpips FILE (LPIPS's linear heads) -> the LPIPS module, frozen, on
    `device`. Without --lpips the heads are unit weights (LPIPS's uncalibrated baseline)."""
    vgg = _check_file(vgg_path, "--vgg", "VGG-16 weights (torchvision's vgg16-397923af.pth), the features LPIPS compares")
    lin = _check_file(lpips_path, "--lpips", "LPIPS linear heads (vgg.pth)") if lpips_path is not None else None
    if lin is None:
        say("LPIPS without --lpips FILE: unit channel weights (the uncalibrated baseline), not calibrated LPIPS")
    net = _import_vgg().load_lpips(vgg, lin, device)
    return net.eval().requires_grad_(False)


def noise_regularization(maps) -> torch.Tensor:
    """Scalar: sum over noise maps [H, W] and their scales (halved by 2x2 averaging while larger than 8x8)
    of (mean n(x, y) n(x+1, y))^2 + (mean n(x, y) n(x, y+1))^2 (StyleGAN2 appendix D)."""
    total = None
    for n in maps:
        x = n[None, None]
        while True:
            term = ((x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2)
            total = term if total is None else total + term
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total if total is not None else torch.zeros(())


@torch.no_grad()
def renormalize_(maps) -> None:
    """Each noise map to zero mean and unit variance, in place (after every step, StyleGAN2 appendix D)."""
    for n in maps:
        n.sub_(n.mean()).div_(n.square().mean().sqrt().clamp_min(1e-8))
