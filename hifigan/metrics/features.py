"""Feature sets for the protocol metrics: images from a folder, an .npz, a run's data or a generator,
pushed through a feature network, split over ranks and gathered, and real-data features cached.

Generated images are G's images for seeds 0..N-1 (the images `launch/generate.py --seeds` writes, a
conditional G asked for class seed % num_classes); rank r of w makes seeds r, r + w, ...; the
gathered features are put back in seed order, so a two-process evaluation sees the same images in
the same order as a one-process evaluation of the saved checkpoint.

Real features are computed once per (dataset digest, resolution, feature network file, feature kind,
image cap) and cached as .npz under $HIFIGAN_CACHE_DIR (else $XDG_CACHE_HOME/hifigan)/metrics.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from hifigan.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class Dist:
    """Who evaluates: this process's rank, the world size and an all-gather of Python objects."""
    rank: int = 0
    world: int = 1
    gather_object: Callable | None = None

    def gather(self, obj) -> list:
        return [obj] if self.world == 1 else self.gather_object(obj)


SINGLE = Dist()


@dataclass
class EvalContext:
    """What a protocol metric needs beyond G: the recipe's data section (real images) and the ranks."""
    data: object = None
    dist: Dist = field(default_factory=Dist)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# -- image sets -----------------------------------------------------------------------------------
def load_image_set(path) -> np.ndarray:
    """uint8 [N, H, W, C] from an image folder (sorted by name) or an .npz holding `images` uint8
    [N, H, W, C]; one-line UserError for anything else."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{p}: holds no images ({', '.join(IMAGE_SUFFIXES)}); give an image folder or an .npz")
        images = [_read_image(f) for f in files]
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise UserError(f"{p}: images of different sizes or channels ({', '.join(sorted(map(str, shapes))[:3])}); "
                            f"resize them to one size first")
        return np.stack(images)
    if p.suffix == ".npz" and p.is_file():
        try:
            with np.load(p, allow_pickle=False) as z:
                if "images" not in z.files:
                    raise UserError(f"{p}: no `images` array (it has {', '.join(z.files) or 'none'}); "
                                    f"save uint8 [N, H, W, C] under the key images")
                images = z["images"]
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001  (a damaged archive: one line)
            raise UserError(f"{p}: not a readable .npz ({type(e).__name__}); save with numpy.savez") from None
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) < 2:
            raise UserError(f"{p}: `images` is {images.dtype} {list(images.shape)}; need uint8 [N, H, W, C] "
                            f"with N >= 2 and C = 1 or 3")
        return images
    raise UserError(f"{p}: no such image folder or .npz file")


def _read_image(f: Path) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(f) as im:
            arr = np.asarray(im.convert("L" if im.mode in ("L", "I", "I;16", "1") else "RGB"))
    except Exception as e:  # noqa: BLE001  (PIL raises many types on corrupt files)
        raise UserError(f"{f}: not a readable image ({type(e).__name__}); remove or replace it") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, C] -> [N, C, H, W] with grayscale and RGB sets made comparable (3 channels)."""
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


# -- feature extraction ---------------------------------------------------------------------------
def batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch: int, device) -> np.ndarray:
    """fn over uint8 [N, C, H, W] (grayscale repeated to RGB) in batches on `device` -> float64 [N, F]."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    out = [fn(images[i:i + batch].to(device)).double().cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy()


def generated(G, n: int, fn: Callable[[torch.Tensor], torch.Tensor], dist: Dist = SINGLE, batch: int = 64,
              device=None) -> np.ndarray:
    """fn's features [n, F] of G's images for seeds 0..n-1, each rank making its share (module)."""
    from hifigan import sampling
    device = device or next(G.parameters()).device
    mine, feats = [], []
    for idx in my_chunks(n, batch, dist):
        images = sampling.generate(G, idx, batch_size=batch)    # uint8 [B, H, W, C]
        feats.append(batched(fn, to_nchw(images), batch, device))
        mine += idx
    return gather_rows(dist, mine, feats, n)


def my_chunks(n: int, batch: int, dist: Dist) -> list[list[int]]:
    """This rank's chunks of 0..n-1: chunk k is [k * batch, (k + 1) * batch), rank r takes chunks
    r, r + w, ... Every batch holds the same samples for any number of ranks, so results are
    bit-identical to a one-process evaluation (PPL divides float32 differences by eps^2 = 1e-8 and
    would otherwise show a batch's summation order)."""
    starts = range(dist.rank * batch, n, dist.world * batch)
    return [list(range(s, min(s + batch, n))) for s in starts]


def gather_rows(dist: Dist, mine: list[int], feats: list[np.ndarray], n: int) -> np.ndarray:
    """Every rank's rows (`mine`: their indices, `feats`: their feature blocks) as one [n, F] array."""
    parts = dist.gather((mine, np.concatenate(feats) if feats else np.zeros((0, 0))))
    dim = max(p[1].shape[1] for p in parts if len(p[0]))
    out = np.empty((n, dim))
    for idx, f in parts:
        if len(idx):
            out[idx] = f
    return out


# -- real data of a run ---------------------------------------------------------------------------
def real_images(data_cfg, limit: int | None = None) -> tuple[Iterator[torch.Tensor], str, int]:
    """(batches of uint8 [B, C, H, W], dataset digest, count) of a recipe's whole training data: the
    in-memory set, or every sample of its shards decoded at data.resolution (bad samples skipped)."""
    if not data_cfg.shards:
        from hifigan.data.memory import build_dataset
        images = build_dataset(data_cfg, 0).images
        images = images[:limit] if limit else images
        digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]
        return (images[i:i + 256] for i in range(0, len(images), 256)), digest, len(images)
    from hifigan.data.shards import ShardSet, Skip, Truncated, decode, iter_samples
    shards = ShardSet.open(data_cfg.shards, data_cfg.meta, allow_pipe=data_cfg.allow_pipe)
    res = data_cfg.resolution
    src, ch = shards.resolution or res, shards.channels or 3
    total = min(shards.total, limit) if limit else shards.total

    def batches():
        buf, seen = [], 0
        for url in shards.urls:
            for item in iter_samples(url):
                if isinstance(item, Truncated) or seen >= total:
                    break
                try:
                    arr, _ = decode(item[1], res, src, ch, 0)
                except Skip:
                    continue
                buf.append(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1))
                seen += 1
                if len(buf) == 256:
                    yield torch.stack(buf)
                    buf = []
        if buf:
            yield torch.stack(buf)
    return batches(), f"{shards.fingerprint}-r{res}", total


def cache_path(*key) -> Path:
    from hifigan.metrics.mnist_classifier import cache_dir
    name = hashlib.sha256(":".join(str(k) for k in key).encode()).hexdigest()[:24]
    return cache_dir() / "metrics" / f"{name}.npz"


def real_features(data_cfg, fn: Callable[[torch.Tensor], torch.Tensor], net_digest: str, kind: str,
                  limit: int | None = None, dist: Dist = SINGLE, device="cpu") -> np.ndarray:
    """fn's features of the recipe's real images (the first `limit`, else all), from the cache when
    present; computed by every rank for its share and gathered, then written by rank 0."""
    from hifigan.io import atomic_write
    batches, digest, total = real_images(data_cfg, limit)
    path = cache_path(digest, data_cfg.resolution, net_digest, kind, limit)
    cached = _read_cache(path)
    # every rank must take the same branch (the gather below is collective): nodes without a shared
    # cache folder recompute together unless all of them hold the entry
    if all(dist.gather(cached is not None)):
        return cached
    mine, feats, start, chunk = [], [], 0, 0
    for b in batches:  # chunks of 64 images dealt to the ranks in turn (as my_chunks)
        for j in range(0, len(b), 64):
            part = b[j:j + 64]
            if chunk % dist.world == dist.rank:
                feats.append(batched(fn, part, 64, device))
                mine += range(start + j, start + j + len(part))
            chunk += 1
        start += len(b)
    if start < 2:
        raise UserError(f"the recipe's data holds {start} readable images; real-data statistics need at least 2")
    out = gather_rows(dist, mine, feats, start)
    if dist.rank == 0:
        atomic_write(path, lambda tmp: _save_features(tmp, out))
    return out


def _read_cache(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["features"]
    except Exception:  # noqa: BLE001  (a damaged cache entry is recomputed)
        return None


def _save_features(tmp: str, features: np.ndarray) -> None:
    with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a path
        np.savez(f, features=features)
