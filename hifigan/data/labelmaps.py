"""Label and instance maps of paired sets for semantic image synthesis (SPADE: Park et al. 2019,
"Semantic Image Synthesis with Spatially-Adaptive Normalization", arXiv:1903.07291).

A paired sample's c is its maps as int64 [1, H, W] label ids in [0, label_nc), or [2, H, W] with
the instance ids in channel 1 (Cityscapes' *_instanceIds.png: label * 1000 + k for things, the label
id for stuff; SPADE only uses their boundaries). In shards they are KEY.seg.png (8-bit) and
KEY.inst.png (8- or 16-bit) at the stored size (dataset.json "resolution" x "height"), written by
data/pack.py. The dataset.json says "paired": true, "label_nc" and "instance".

Reading below the stored size (progressive growing) samples the maps with the nearest rule: output
pixel i reads source pixel floor((i + 0.5) * source / size), i.e. the centre pixel of each k x k box
(the in-memory feed uses the same rule). Maps are reduced before they are flipped, as the images are.
A missing, undecodable, wrong-sized or wrong-mode map is "bad_labelmap" / "bad_instancemap"; a label
id >= label_nc is "label_out_of_range" (checked at the stored size).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

PAIRED_REASONS = ("bad_labelmap", "bad_instancemap", "label_out_of_range")  # skip reasons of paired sets
PAIRED_SKIP_TEXT = {
    "bad_labelmap": "the label map is missing, does not decode or has the wrong size or mode",
    "bad_instancemap": "the instance map is missing, does not decode or has the wrong size or mode",
    "label_out_of_range": "a label id is not below the set's label count",
}


class BadMap(Exception):
    """A map that cannot be used; `reason` is one of PAIRED_REASONS, `detail` says more."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def nearest_index(size: int, source: int) -> np.ndarray:
    """Source index of each of `size` outputs: floor((i + 0.5) * source / size)."""
    return ((np.arange(size) + 0.5) * source / size).astype(np.int64)


def decode_maps(files: dict, size: tuple[int, int], source_size: tuple[int, int], label_nc: int,
                instance: bool) -> np.ndarray:
    """A paired sample's maps at `size` (W, H) from the stored `source_size`: [1, H, W] uint8 label ids,
    or [2, H, W] int32 with the instance ids; raise BadMap for a bad map or a label id >= label_nc."""
    seg = _read_map(files, "seg.png", "bad_labelmap", source_size, sixteen=False)
    top = int(seg.max(initial=0))
    if top >= label_nc:
        raise BadMap("label_out_of_range", f" (label {top}, the set has {label_nc} labels)")
    maps = [seg]
    if instance:
        maps.append(_read_map(files, "inst.png", "bad_instancemap", source_size, sixteen=True))
    if size != source_size:
        ys, xs = nearest_index(size[1], source_size[1]), nearest_index(size[0], source_size[0])
        maps = [m[ys[:, None], xs[None, :]] for m in maps]
    return np.stack(maps).astype(np.int32) if instance else maps[0][None]


def _read_map(files: dict, ext: str, reason: str, source_size: tuple[int, int], sixteen: bool) -> np.ndarray:
    raw = files.get(ext)
    if raw is None:
        raise BadMap(reason, f" (no .{ext})")
    try:
        m = Image.open(io.BytesIO(raw))
        m.load()
        a = np.asarray(m)
    except Exception:  # PIL raises many types on corrupt data
        raise BadMap(reason, f" (.{ext} does not decode)") from None
    if a.ndim != 2 or not (a.dtype == np.uint8 or (sixteen and a.dtype == np.uint16)):
        raise BadMap(reason, f" (.{ext} is {m.mode}, not {'8/16-bit' if sixteen else '8-bit'} gray)")
    if (a.shape[1], a.shape[0]) != source_size:
        raise BadMap(reason, f" (.{ext} is {a.shape[1]}x{a.shape[0]}, not {source_size[0]}x{source_size[1]})")
    return a
