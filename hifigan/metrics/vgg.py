"""VGG16 and VGG19 (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", arXiv:1409.1556) from a local weights file, for precision/recall features, the
perceptual loss of projection, and LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric", arXiv:1801.03924).

Files (nothing downloads):
  - `vgg16-397923af.pth`, torchvision's ImageNet VGG16 state dict (`features.N.*`, `classifier.N.*`),
    loaded weights-only into `VGG16`; or NVIDIA's TorchScript `vgg16.pt` (StyleGAN2-ADA's metrics),
    called as `net(uint8, return_features=True)` and `net(x255, resize_images=False, return_lpips=True)`.
  - LPIPS's linear heads `vgg.pth` (keys `lin0.model.1.weight` ... `lin4.model.1.weight`, shipped in
    the lpips package's weights/v0.1 folder); without it LPIPS uses unit weights (the "baseline" of
    the paper, no learned calibration), which the result's name says.
  - `vgg19-dcbb9e9d.pth`, torchvision's ImageNet VGG19 state dict: only its `features.N.*` convs are
    used (SPADE's perceptual loss, `VGG19Features`); the classifier keys are ignored.

Precision/recall features (Kynkaenniemi et al. 2019, arXiv:1904.06991) are the 4096-d activations of
the second fully connected layer after its ReLU, from images resized to 224x224 (bilinear) and
normalized with ImageNet's mean and std. LPIPS: images in [-1, 1] shifted and scaled per channel
(LPIPS's constants), relu1_2 .. relu5_3 activations unit-normalized over channels, squared
differences weighted per channel, averaged over space, summed over the five layers.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from hifigan.errors import UserError
from hifigan.metrics.inception import is_torchscript
from hifigan.nn.vgg import VGG19_FILES, VGG19Features, conv_stack, load_vgg19  # noqa: F401
from hifigan.weights import load_into, load_state
from hifigan.weights import weights_path as _path

VGG_FILES = "vgg16-397923af.pth (torchvision's VGG16 state dict) or vgg16.pt (NVIDIA, TorchScript)"
LPIPS_FILES = "vgg.pth of the lpips package (lpips/weights/v0.1/vgg.pth)"
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# torchvision index of the ReLU after each named conv (conv1_1 -> 1, ...), for perceptual losses
RELU_INDEX = {}
_i, _block, _n = 0, 1, 1
for _v in CFG:
    if _v == "M":
        _i, _block, _n = _i + 1, _block + 1, 1
    else:
        RELU_INDEX[f"conv{_block}_{_n}"] = _i + 1
        _i, _n = _i + 2, _n + 1
LPIPS_LAYERS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LPIPS_SHIFT, LPIPS_SCALE = (-0.030, -0.088, -0.188), (0.458, 0.448, 0.450)


class VGG16(nn.Module):
    """torchvision's VGG16 layout (so its state dict loads as is)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*conv_stack(CFG))
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000))

    def layer_outputs(self, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
        """Activations (after ReLU) of the named convs, e.g. conv1_1, conv3_2, for x already normalized."""
        want = {RELU_INDEX[n]: n for n in names}
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in want:
                out[want[i]] = x
                if len(out) == len(want):
                    break
        return out

    def fc2(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> [N, 4096] precision/recall features (see the module)."""
        x = F.interpolate(img.float() / 255, size=(224, 224), mode="bilinear", align_corners=False)
        x = (x - x.new_tensor(IMAGENET_MEAN)[:, None, None]) / x.new_tensor(IMAGENET_STD)[:, None, None]
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier[:5](x)

    def forward(self, img: torch.Tensor, return_features: bool = True) -> torch.Tensor:
        return self.fc2(img)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> torchvision VGG input (ImageNet mean/std on [0, 1])."""
    x = (x + 1) / 2
    return (x - x.new_tensor(IMAGENET_MEAN)[:, None, None]) / x.new_tensor(IMAGENET_STD)[:, None, None]


class ScriptedVGG(nn.Module):
    """NVIDIA's TorchScript vgg16.pt behind the same calls as `VGG16` / `LPIPS`."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def fc2(self, img):
        return self.net(img, return_features=True)

    def lpips_features(self, x):  # x in [-1, 1]
        return self.net((x + 1) * 127.5, resize_images=False, return_lpips=True)


def load_vgg16(path, device="cpu", option: str = "--vgg"):
    """VGG16 from a local file of either format (module docstring), in eval mode without gradients."""
    p = _path(path, "VGG16", VGG_FILES, option)
    if is_torchscript(p):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ScriptedVGG(torch.jit.load(str(p), map_location="cpu").eval()).to(device)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{p}: TorchScript archive does not load ({type(e).__name__}); expected {VGG_FILES}") from None
    return load_into(VGG16(), load_state(p, "VGG16", VGG_FILES), p, "VGG16", VGG_FILES).to(device)


class LPIPS(nn.Module):
    """LPIPS distance d(a, b) [N] for images a, b [N, 3, H, W] in [-1, 1] (module docstring)."""

    def __init__(self, vgg, lins: list[torch.Tensor] | None):
        super().__init__()
        self.vgg = vgg.requires_grad_(False)
        self.learned = lins is not None or isinstance(vgg, ScriptedVGG)  # NVIDIA's vgg16.pt holds the learned heads
        widths = (64, 128, 256, 512, 512)
        for i, w in enumerate(widths):
            self.register_buffer(f"lin{i}", (lins[i] if lins is not None else torch.ones(1, w, 1, 1)).float())

    def features(self, x: torch.Tensor):
        if isinstance(self.vgg, ScriptedVGG):
            return None
        x = (x - x.new_tensor(LPIPS_SHIFT)[:, None, None]) / x.new_tensor(LPIPS_SCALE)[:, None, None]
        acts = self.vgg.layer_outputs(x, LPIPS_LAYERS)
        return [acts[n] / (acts[n].square().sum(1, keepdim=True).sqrt() + 1e-10) for n in LPIPS_LAYERS]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        if isinstance(self.vgg, ScriptedVGG):
            return (self.vgg.lpips_features(a) - self.vgg.lpips_features(b)).square().sum(1)
        fa, fb = self.features(a), self.features(b)
        return sum(((x - y).square() * getattr(self, f"lin{i}")).sum(1).mean((1, 2))
                   for i, (x, y) in enumerate(zip(fa, fb)))


def load_lpips(vgg_path, lin_path=None, device="cpu") -> LPIPS:
    """LPIPS from a local VGG16 file and (optionally) LPIPS's linear heads file."""
    vgg = load_vgg16(vgg_path, device, "--vgg")
    lins = None
    if lin_path is not None and not isinstance(vgg, ScriptedVGG):
        p = _path(lin_path, "LPIPS linear-head", LPIPS_FILES, "--lpips")
        state = load_state(p, "LPIPS", LPIPS_FILES)
        try:
            lins = [state[f"lin{i}.model.1.weight"] for i in range(5)]
        except KeyError as e:
            raise UserError(f"{p}: no {e.args[0]}; expected {LPIPS_FILES}") from None
        want = (64, 128, 256, 512, 512)
        if [tuple(w.shape) for w in lins] != [(1, c, 1, 1) for c in want]:
            raise UserError(f"{p}: linear heads have shapes {[list(w.shape) for w in lins]}; expected {LPIPS_FILES}")
    return LPIPS(vgg, lins).to(device).eval()
