"""Improved precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for
Assessing Generative Models", arXiv:1904.06991). Each set's manifold is the union of balls around its
features whose radius is the distance to the k-th nearest other member (k = 3 in pr50k3_full);
    precision = share of generated features inside the real manifold,
    recall    = share of real features inside the generated manifold.
Distances are Euclidean in the feature space (VGG16 fc2, hifigan/metrics/vgg.py), computed in
blocks so 50k x 50k never sits in memory at once.
"""
from __future__ import annotations

import torch


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(x: torch.Tensor, k: int, block: int = 4096) -> torch.Tensor:
    """Distance of each row of x [N, F] to its k-th nearest other row [N]."""
    if len(x) <= k:
        raise ValueError(f"k = {k} nearest neighbours need more than {k} samples, got {len(x)}")
    out = []
    for i in range(0, len(x), block):
        d = _distances(x[i:i + block], x)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the point itself (0)
    return torch.cat(out)


def coverage(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int = 4096) -> float:
    """Share of queries within radii[j] of some centres[j]."""
    inside = []
    for i in range(0, len(queries), block):
        d = _distances(queries[i:i + block], centres)
        inside.append((d <= radii[None]).any(1))
    return float(torch.cat(inside).double().mean())


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of fake features against real ones (module docstring)."""
    real = torch.as_tensor(real, dtype=torch.float64)
    fake = torch.as_tensor(fake, dtype=torch.float64)
    precision = coverage(fake, real, knn_radii(real, k))
    recall = coverage(real, fake, knn_radii(fake, k))
    return precision, recall
