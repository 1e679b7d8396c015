"""The Frechet distance between Gaussian fits of two feature sets (Heusel et al. 2017, "GANs Trained
by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", arXiv:1706.08500):
    FD = |mu1 - mu2|^2 + tr(Sigma1 + Sigma2 - 2 (Sigma1 Sigma2)^(1/2)),
the squared 2-Wasserstein distance between the two Gaussians (Dowson & Landau 1982). Computed in
float64; tr (Sigma1 Sigma2)^(1/2) through scipy.linalg.sqrtm when scipy is installed, else (or when
sqrtm's result is not real) as the sum of the square roots of the eigenvalues of the symmetric PSD
matrix Sigma1^(1/2) Sigma2 Sigma1^(1/2), which has the same trace of the square root.
"""
from __future__ import annotations

import numpy as np


def gaussian_fit(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [F], covariance [F, F]) of feats [N, F], in float64 (unbiased covariance)."""
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 feature vectors [N, F], got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, method: str = "auto") -> float:
    """tr (s1 s2)^(1/2) for covariance matrices s1, s2; method "auto" (sqrtm if scipy is installed),
    "sqrtm" or "eigh"."""
    if method not in ("auto", "sqrtm", "eigh"):
        raise ValueError(f"method {method!r}: use auto, sqrtm or eigh")
    if method in ("auto", "sqrtm"):
        try:
            from scipy import linalg
        except ImportError:
            if method == "sqrtm":
                raise
        else:
            import warnings
            with warnings.catch_warnings():  # singular products (fewer samples than features) are handled below
                warnings.simplefilter("ignore")
                covmean = linalg.sqrtm(s1 @ s2)
                if not np.isfinite(covmean).all():  # singular product: offset both (the usual FID guard)
                    eps = 1e-6 * np.eye(len(s1))
                    covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
            tr = np.trace(covmean)
            if np.isfinite(tr) and abs(np.imag(tr)) <= 1e-6 * max(1.0, abs(np.real(tr))):
                return float(np.real(tr))
            if method == "sqrtm":
                raise ValueError(f"scipy.linalg.sqrtm gave a non-real trace {tr}")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], method: str = "auto") -> float:
    """FD between Gaussians a = (mu1, Sigma1) and b = (mu2, Sigma2); rounding below 0 is clipped to 0."""
    (mu1, s1), (mu2, s2) = a, b
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"feature sizes differ: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2, method)
    return max(float(fd), 0.0)
