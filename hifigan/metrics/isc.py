"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs", arXiv:1606.03498):
    IS = exp(E_x KL(p(y|x) || p(y))),
computed per split of the samples (10 splits in the is50k protocol) with p(y) the split's mean
prediction; reported as the mean and standard deviation over splits. Splits are contiguous in seed
order (NVIDIA's is50k); torch-fidelity shuffles the samples first, which changes the spread across
splits but not the estimator.
"""
from __future__ import annotations

import numpy as np


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the IS of class probabilities [N, K] over `splits` contiguous splits."""
    p = np.asarray(probs, np.float64)
    n = len(p)
    if splits < 1 or n < splits:
        raise ValueError(f"IS needs at least one image per split: {n} images, {splits} splits")
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        q = part.mean(0, keepdims=True)
        kl = (part * (np.log(np.clip(part, 1e-30, None)) - np.log(np.clip(q, 1e-30, None)))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
