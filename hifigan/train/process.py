"""Process-level state a run sets up and checkpoints: seeds, determinism, threads, RNG states, memory.

Nothing here knows how the run is distributed; backends call `setup` with their rank, and the
trainer captures and restores `rng_state()` per rank for exact resume.
"""
from __future__ import annotations

import os
import random
import resource

import numpy as np
import torch


def setup(seed: int, rank: int, deterministic: bool = True, threads: int | None = None) -> None:
    """Per-rank seeds (seed + rank for python, numpy and torch), thread count and determinism flags."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads:
        torch.set_num_threads(threads)
    s = seed + rank
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)  # CUDA generators too
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:  # let cuDNN time its algorithms per shape (the double-backward convs of R1 / path length gain most)
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict:
    """This process's RNG states (torch, CUDA, numpy, python) as tensors and plain values
    (loadable with torch.load(weights_only=True))."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": list(random.getstate()),
    }


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    kind, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    version, internal, gauss_next = s["python"]
    random.setstate((version, tuple(internal), gauss_next))


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
