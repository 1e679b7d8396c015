"""An in-memory image set with a deterministic, stateless index stream.

The stream is the concatenation of per-epoch permutations, epoch e shuffled by a generator
seeded with (seed, e). A global batch is the next `batch_size` positions; the position (images
drawn so far) is the whole data state, so a checkpoint stores one integer and a resumed run
draws exactly the images the uninterrupted run would have drawn. Each rank and each
accumulation micro-step takes a disjoint, contiguous chunk of the global batch.

Paired sets (SPADE: Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive
Normalization", arXiv:1903.07291) carry a label map per image; `c` is then that map, int64
[N, 1, H, W] of label ids in [0, label_nc). `mnist_labelmaps` is the tiny one: each digit's stroke
mask (pixels > MASK_THRESHOLD of the image at data.resolution) labelled digit + 1, background 0.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hifigan.data.builtin import load_mnist
from hifigan.errors import UserError


MASK_THRESHOLD = 127  # mnist_labelmaps: a pixel belongs to the stroke when its uint8 value exceeds this


class InMemoryImages:
    def __init__(self, images: np.ndarray, labels: np.ndarray | None, seed: int = 0, num_classes: int = 0,
                 maps: np.ndarray | None = None, label_nc: int = 0):
        self.images = torch.from_numpy(np.ascontiguousarray(images))  # [N, C, H, W] uint8
        self.labels = None if labels is None else torch.from_numpy(labels).long()  # [N]
        self.num_classes = num_classes
        self.maps = None if maps is None else torch.from_numpy(np.ascontiguousarray(maps))  # [N, 1, H, W] uint8
        self.label_nc, self.instance = (label_nc if maps is not None else 0), False
        self.seed = seed
        self._perm_epoch, self._perm = -1, None

    def __len__(self):
        return len(self.images)

    @property
    def shape(self):
        return tuple(self.images.shape[1:])

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(len(self), generator=g), epoch
        return self._perm

    def indices(self, position: int, count: int) -> torch.Tensor:
        """Dataset indices at stream positions [position, position + count)."""
        out, n = [], len(self)
        while count > 0:
            epoch, offset = divmod(position, n)
            take = min(count, n - offset)
            out.append(self._permutation(epoch)[offset:offset + take])
            position, count = position + take, count - take
        return torch.cat(out)

    def get(self, idx: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images as float in [-1, 1] on `device` (uint8 travels, conversion happens there) and c: the
        label maps (int64 [n, 1, H, W]) of a paired set, else the class labels (or None)."""
        img = self.images[idx].to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
        if self.maps is not None:
            return img, self.maps[idx].to(device, non_blocking=True).long()
        c = None if self.labels is None else self.labels[idx].to(device)
        return img, c


class StatelessFeed:
    """The parts of the trainer's feed interface that a feed without reader state leaves empty."""

    def begin(self, nimg: int, count: int) -> None:
        pass

    def state_dict(self):
        return None

    def load_state_dict(self, state, world: int) -> None:
        pass

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class MemoryFeed(StatelessFeed):
    """Feeds the training loop from an InMemoryImages: the global batch at stream position `nimg`
    is drawn once per phase (`begin`) and each rank / micro-step takes its chunk (`next`). The
    position is the trainer's nimg, so the feed itself has no state to checkpoint."""

    def __init__(self, data: InMemoryImages, batch_gpu: int, seed: int, xflip: bool = False):
        self.data, self.batch_gpu, self.seed, self.xflip = data, batch_gpu, seed, xflip
        self.shape, self.num_classes = data.shape, data.num_classes
        self.label_nc, self.instance = data.label_nc, data.instance
        self.resolution = data.shape[-1]
        self.idx = self.flips = None

    def configure(self, resolution: int, batch_gpu: int) -> None:
        """Deliver `batch_gpu` images per chunk at `resolution` (box-downsampled on the device;
        progressive growing)."""
        self.resolution, self.batch_gpu = resolution, batch_gpu

    def begin(self, nimg: int, count: int) -> None:
        self.idx = self.data.indices(nimg, count)
        if self.xflip:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + nimg + 1)
            self.flips = torch.rand(count, generator=g) < 0.5

    def next(self, chunk: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        sl = slice(chunk * self.batch_gpu, (chunk + 1) * self.batch_gpu)
        img, c = self.data.get(self.idx[sl], device)
        if self.resolution != img.shape[-1]:
            k = img.shape[-1] // self.resolution
            img = F.avg_pool2d(img, k)
            if self.label_nc:  # nearest: the centre pixel of each k x k box, as the shard reader picks it
                c = c[..., k // 2::k, k // 2::k]
        if self.xflip:
            f = self.flips[sl].to(device)
            img = torch.where(f[:, None, None, None], img.flip(3), img)
            if self.label_nc:  # the map follows its image
                c = torch.where(f[:, None, None, None], c.flip(3), c)
        return img, c



def resize_uint8(images: np.ndarray, resolution: int) -> np.ndarray:
    """[N, C, h, w] uint8 -> [N, C, res, res] uint8, antialiased bilinear (area-like when shrinking)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    x = torch.from_numpy(images).float()
    out = []
    for chunk in x.split(2048):
        out.append(F.interpolate(chunk, size=(resolution, resolution), mode="bilinear",
                                 antialias=True, align_corners=False).round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out).numpy()


HOLDOUT_SEED = 1606  # fixed: which images are held out never depends on the run seed


def holdout_split(n: int, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices in dataset order, held-out indices): the held-out images are the last
    `holdout` of a fixed permutation of range(n) (numpy's RandomState, stable across versions)."""
    if not 0 <= holdout < n:
        raise UserError(f"data.holdout={holdout}: must be in [0, {n}) for this {n}-image set; lower it")
    perm = np.random.RandomState(HOLDOUT_SEED).permutation(n)
    return np.sort(perm[:n - holdout]), np.sort(perm[n - holdout:])


def keep_labels_per_class(labels: np.ndarray, k: int) -> np.ndarray:
    """A copy of `labels` that keeps the first k labels of each class (in dataset order) and sets
    every other one to -1 (unlabelled, for semi-supervised training)."""
    out = np.full_like(labels, -1)
    for cls in np.unique(labels):
        first = np.flatnonzero(labels == cls)[:k]
        out[first] = cls
    return out


def build_dataset(cfg, seed: int) -> InMemoryImages:
    """The dataset a `DataConfig` describes, at its resolution: without its held-out images
    (data.holdout) and with only the first data.labels_per_class labels of each class."""
    if cfg.source in ("mnist", "mnist_labelmaps"):
        images, labels = load_mnist(cfg.path, cfg.split)
        if cfg.holdout:
            train, _ = holdout_split(len(images), cfg.holdout)
            images, labels = images[train], labels[train]
        if cfg.labels_per_class is not None:
            labels = keep_labels_per_class(labels, cfg.labels_per_class)
        images = resize_uint8(images[:, None], cfg.resolution)
        if cfg.source == "mnist_labelmaps":
            return InMemoryImages(images, None, seed=seed, maps=mnist_labelmaps(images, labels), label_nc=11)
        return InMemoryImages(images, labels, seed=seed, num_classes=10)
    raise ValueError(f"unknown data source {cfg.source!r}")


def mnist_labelmaps(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 [N, 1, H, W] label maps of digits [N, 1, H, W]: digit + 1 on the stroke (pixel >
    MASK_THRESHOLD), 0 elsewhere, i.e. 11 labels."""
    return np.where(images > MASK_THRESHOLD, (labels + 1).astype(np.uint8)[:, None, None, None], 0).astype(np.uint8)
