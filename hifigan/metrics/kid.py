"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs", arXiv:1801.01401): the
squared maximum mean discrepancy between two feature sets under the cubic polynomial kernel
    k(x, y) = (x . y / d + 1)^3,
estimated without bias (the U-statistic within each set, the plain mean across them):
    MMD^2 = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
            - 2 sum_{i, j} k(x_i, y_j) / m^2,
averaged over `subsets` random subsets of m = min(subset_size, |X|, |Y|) from each set (100 of 1000
in the kid50k_full protocol). Subsets are drawn with numpy's RandomState(seed), first from X then
from Y in each round, torch-fidelity's convention (seed 2020), so its KID and ours agree exactly.
"""
from __future__ import annotations

import numpy as np


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of feature sets x, y [m, d] (equal m) under the cubic polynomial kernel."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, d = x.shape
    if y.shape != x.shape or m < 2:
        raise ValueError(f"need two feature sets of equal shape with at least 2 rows, got {x.shape} and {y.shape}")
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def kernel_inception_distance(x: np.ndarray, y: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 2020) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over `subsets` random subsets (see the module)."""
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"subsets={subsets}, subset_size={subset_size}: need subsets >= 1 and subset_size >= 2")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError(f"KID needs at least 2 images in each set, got {len(x)} and {len(y)}")
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        mmds[i] = polynomial_mmd2(a, b)
    return float(mmds.mean()), float(mmds.std())
