"""`mnist_fd`: the Frechet distance of generated digits to the real ones in the feature space of a
small digit classifier, plus class coverage and, for conditional generators, class agreement.

Frechet distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium", arXiv:1706.08500): fit a Gaussian N(mu, Sigma) to each feature set;
    FD = |mu1 - mu2|^2 + tr(Sigma1 + Sigma2 - 2 (Sigma1 Sigma2)^(1/2)),
the squared 2-Wasserstein distance between the two Gaussians (Dowson & Landau 1982). Computed in
float64; tr (Sigma1 Sigma2)^(1/2) through scipy.linalg.sqrtm when scipy is installed, else (or when
sqrtm's result is not real) as the sum of the square roots of the eigenvalues of the symmetric PSD
matrix Sigma1^(1/2) Sigma2 Sigma1^(1/2), which has the same trace of the square root.

The features are the 128-d penultimate layer of the classifier in mnist_classifier.py (trained once
per (resolution, seed) and cached). The samples are G's images for seeds 0..N-1 (the same images
`launch/generate.py --seeds 0-(N-1)` writes), quantised to uint8 like saved images and resized to the
classifier's resolution as the training data is; a conditional G gets class seed % num_classes, so
the requested classes are uniform and exactly balanced. Figures:
    mnist_fd        FD between the samples and all 5,000 real digits (lower is better)
    mnist_coverage  classes (0-10) that the classifier predicts for at least 1% of the samples
    mnist_cond_acc  conditional G with 10 classes only: share of samples classified as the class asked for
    mnist_class_hist, mnist_confidence: predicted class shares and the mean top softmax probability
    mnist_fd_floor  FD of 500 held-out real digits vs the 4,500 training digits (the real data's own
                    figure, with 500 samples' bias; N-sample FDs of a perfect G sit a little above 0)
    mnist_classifier_acc  the classifier's accuracy on those 500 held-out digits (bounds cond_acc)
FD depends on N (its estimate is biased upward by ~tr(Sigma)/N); compare figures with the same N.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hifigan.errors import UserError
from hifigan.metrics import MetricResult
from hifigan.metrics.mnist_classifier import TrainedClassifier, features_and_logits, load_classifier, to_input
from hifigan.registry import METRICS


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


def summarize(feats: torch.Tensor, logits: torch.Tensor, c: torch.Tensor | None, clf: TrainedClassifier,
              min_share: float = 0.01) -> MetricResult:
    """The figures of generated samples' classifier features [N, F] and logits [N, 10] (requested
    classes c [N] for a 10-class conditional G, else None)."""
    n = len(logits)
    pred = logits.argmax(1)
    hist = torch.bincount(pred, minlength=10).double() / n
    scalars = {
        "mnist_fd": frechet_distance(gaussian_fit(feats.double().numpy()), (clf.real_mu, clf.real_sigma)),
        "mnist_coverage": int((hist >= min_share).sum()),
    }
    if c is not None:
        scalars["mnist_cond_acc"] = float((pred == c.cpu()).double().mean())
    details = {
        "mnist_class_hist": [round(float(h), 6) for h in hist],
        "mnist_confidence": float(logits.softmax(1).max(1).values.mean()),
        "mnist_fd_floor": clf.fd_floor,
        "mnist_classifier_acc": clf.held_out_acc,
        "mnist_samples": n,
        "mnist_classifier": str(clf.path),
    }
    return MetricResult(scalars, details)


@METRICS.register("mnist_fd")
class MnistFD:
    """FD in a digit classifier's features, class coverage and conditional agreement (see the module)."""

    @dataclass(kw_only=True)
    class Config:
        samples: int = 10_000        # generated images (seeds 0..samples-1)
        resolution: int = 32         # classifier input size; samples and real digits are resized to it
        classifier_seed: int = 0     # seed of the classifier's training (a different seed: another cached classifier)
        batch: int = 250             # images per G / classifier forward pass
        min_share: float = 0.01      # a class counts as covered when at least this share of samples is predicted as it

        def __post_init__(self):
            if self.samples < 2:
                raise ValueError(f"samples={self.samples}: need at least 2 to fit a covariance (default 10000)")
            if self.resolution < 4:
                raise ValueError(f"resolution={self.resolution}: must be at least 4 (MNIST digits are 28x28)")
            if self.batch < 1:
                raise ValueError(f"batch={self.batch}: must be positive")
            if not 0 < self.min_share <= 1:
                raise ValueError(f"min_share={self.min_share}: must be in (0, 1]")

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._clf: TrainedClassifier | None = None

    def classifier(self) -> TrainedClassifier:
        """Loaded (or trained and cached) on first use, then held."""
        if self._clf is None:
            self._clf = load_classifier(self.cfg.resolution, self.cfg.classifier_seed)
        return self._clf

    def check(self, G) -> None:
        """Fail early (before training) for a generator this metric cannot judge."""
        shape = getattr(G, "img_shape", None)
        if shape is not None and shape[0] != 1:
            raise UserError(f"metrics: mnist_fd needs a 1-channel (grayscale) generator, but this one makes "
                            f"{shape[0]}-channel images; remove mnist_fd from metrics")

    @torch.no_grad()
    def __call__(self, G, device=None) -> MetricResult:
        """Sample G (in eval mode; its training mode is restored) and measure; the global RNG is untouched."""
        from hifigan import sample
        from hifigan.data.memory import resize_uint8
        self.check(G)
        clf = self.classifier()
        device = device or next(G.parameters()).device
        net = clf.net.to(device)
        seeds = range(self.cfg.samples)
        images = sample.generate(G, seeds, batch_size=self.cfg.batch)  # uint8 [N, H, W, C]
        if images.shape[-1] != 1:
            raise UserError(f"mnist_fd: G made {images.shape[-1]}-channel images; it needs grayscale digits")
        u8 = torch.from_numpy(resize_uint8(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), self.cfg.resolution))
        feats, logits = features_and_logits(net, to_input(u8), self.cfg.batch)
        c = sample.seed_labels(seeds, G.num_classes) if G.num_classes == 10 else None
        return summarize(feats, logits, c, clf, self.cfg.min_share)
