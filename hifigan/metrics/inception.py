"""The Inception-v3 of the published FID protocol (Szegedy et al. 2016, "Rethinking the Inception
Architecture for Computer Vision", arXiv:1512.00567), as the 2015-12-05 TensorFlow graph that
Heusel et al. (arXiv:1706.08500) computed FID with, loaded from a local file only.

Two file formats users have, both accepted by `load_inception(path)`:
  - the TorchScript `inception-2015-12-05.pt` of NVIDIA's StyleGAN2-ADA/3 repositories, called as
    `net(uint8 [N, 3, H, W], return_features=True)` -> [N, 2048] pool features and
    `net(x, no_output_bias=True)` -> [N, 1008] softmax probabilities (the resizing happens inside);
  - the `pt_inception-2015-12-05-*.pth` state dict of pytorch-fid and torch-fidelity, loaded
    (weights only, never unpickling code) into `FIDInceptionV3` below.

What makes the TF graph differ from the ImageNet Inception-v3 of model zoos, and why a model-zoo
network gives other FIDs: input resized to 299x299 by TensorFlow 1.x bilinear resizing (source
coordinate = destination * in / out, no half-pixel offset), scaled as (x - 128) / 128; the average
pools inside the A, C and first E blocks exclude padding; the second E block pools with max; the
classifier has 1008 outputs. Pool features are the 2048-d global average; IS uses the softmax of
the logits without the classifier's bias (as the TF graph and NVIDIA's `no_output_bias`).
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from hifigan.errors import UserError
from hifigan.weights import load_into, load_state  # noqa: F401  (metrics.vgg and tests import them here)

INCEPTION_FILES = "inception-2015-12-05.pt (NVIDIA, TorchScript) or pt_inception-2015-12-05-6726825d.pth (pytorch-fid)"


def tf1_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1.x `resize_bilinear(align_corners=False)` of float x [N, C, H, W] to size x size:
    output pixel i samples the input at i * in / out (no half-pixel centres), edges clamped."""
    def axis(n_in: int):
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        i0 = src.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        return i0, i1, (src - i0).to(x.dtype)

    y0, y1, fy = axis(x.shape[2])
    x0, x1, fx = axis(x.shape[3])
    top, bottom = x[:, :, y0], x[:, :, y1]                     # [N, C, size, W]
    rows = top + (bottom - top) * fy[:, None]
    left, right = rows[..., x0], rows[..., x1]                 # [N, C, size, size]
    return left + (right - left) * fx


class BasicConv2d(nn.Module):
    """Conv (no bias) -> batch norm (eps 1e-3, TF's) -> ReLU."""

    def __init__(self, cin: int, cout: int, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x):  # the TF graph's 3x3 average pool: padding excluded from the mean
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):  # grid reduction 35 -> 17
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):  # factorized 7x7 convolutions at 17x17
    def __init__(self, cin: int, c7: int):
        super().__init__()
        k17, k71 = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **k17)
        self.branch7x7_3 = BasicConv2d(c7, 192, **k71)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **k71)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **k17)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **k71)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **k17)
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):  # grid reduction 17 -> 8
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):  # expanded filter banks at 8x8; the TF graph's second one pools with max
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3; parameter names follow the pytorch-fid / torch-fidelity state dict."""
    SIZE = 299

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def pool(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> pool features [N, 2048] (float32)."""
        x = tf1_resize_bilinear(img.float(), self.SIZE)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))

    def logits_unbiased(self, pool: torch.Tensor) -> torch.Tensor:
        return pool @ self.fc.weight.T                                  # [N, 1008], no bias (TF graph)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        """NVIDIA's calling convention: pool features, or softmax probabilities of the unbiased logits."""
        pool = self.pool(img)
        return pool if return_features else self.logits_unbiased(pool).softmax(1)


class InceptionFeatures:
    """A loaded FID Inception of either format: `pool(u8)` [N, 2048] and `probs(u8)` [N, 1008] for
    uint8 images [N, C, H, W] (C = 1 is repeated to RGB, as the reference code does for grayscale)."""

    def __init__(self, net, scripted: bool, path: Path):
        self.net, self.scripted, self.path = net, scripted, path
        self.digest_name = f"inception:{path.name}:{path.stat().st_size}"

    def to(self, device):
        self.net = self.net.to(device)
        return self

    @staticmethod
    def _rgb(img: torch.Tensor) -> torch.Tensor:
        if img.dtype != torch.uint8 or img.ndim != 4 or img.shape[1] not in (1, 3):
            raise ValueError(f"Inception takes uint8 [N, 1 or 3, H, W] images, got {img.dtype} {list(img.shape)}")
        return img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img

    @torch.no_grad()
    def pool(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(self._rgb(img), return_features=True).float()

    @torch.no_grad()
    def probs(self, img: torch.Tensor) -> torch.Tensor:
        if self.scripted:
            return self.net(self._rgb(img), no_output_bias=True).float()
        return self.net(self._rgb(img), return_features=False).float()


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip holding code/ and constants.pkl; a state dict holds data.pkl only."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n or n.startswith("code/") for n in names) and any(n.endswith("constants.pkl") for n in names)


def load_inception(path, device="cpu") -> InceptionFeatures:
    """The FID Inception from a local file of either format (see the module); nothing downloads."""
    if path is None or str(path) == "":
        raise UserError(f"this metric needs the FID Inception weights: pass --inception FILE (or the metric's "
                        f"`inception` option), the file {INCEPTION_FILES}; nothing is downloaded")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{p}: no such Inception weights file; expected {INCEPTION_FILES}")
    if is_torchscript(p):
        try:
            with warnings.catch_warnings():  # torch.jit.load's deprecation notice: the format is the users'
                warnings.simplefilter("ignore")
                net = torch.jit.load(str(p), map_location="cpu").eval()
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{p}: TorchScript archive does not load ({type(e).__name__}); "
                            f"expected {INCEPTION_FILES}") from None
        return InceptionFeatures(net, True, p).to(device)
    net = load_into(FIDInceptionV3(), load_state(p, "Inception-v3", INCEPTION_FILES), p, "FID Inception-v3",
                    INCEPTION_FILES)
    return InceptionFeatures(net, False, p).to(device)
