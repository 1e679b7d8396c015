"""`mnist_fd`: the Frechet distance of generated digits to the real ones in the feature space of a
small digit classifier, plus class coverage and, for conditional generators, class agreement.

Frechet distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium", arXiv:1706.08500): fit a Gaussian N(mu, Sigma) to each feature set;
    FD = |mu1 - mu2|^2 + tr(Sigma1 + Sigma2 - 2 (Sigma1 Sigma2)^(1/2)),
the squared 2-Wasserstein distance between the two Gaussians (Dowson & Landau 1982), computed in
hifigan/metrics/frechet.py.

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

from hifigan import sampling
from hifigan.errors import UserError
from hifigan.metrics.base import MetricResult
from hifigan.metrics.frechet import frechet_distance, gaussian_fit
from hifigan.metrics.mnist_classifier import TrainedClassifier, features_and_logits, load_classifier, to_input
from hifigan.schema import MAX_BATCH, MAX_COUNT, bounded, resolution_field
from hifigan.registry import METRICS


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
        samples: int = bounded(10_000, ge=2, le=MAX_COUNT)     # generated images (seeds 0..samples-1)
        resolution: int = resolution_field(32, 4, pow2=False)  # classifier input size; samples and real digits are resized to it
        classifier_seed: int = bounded(0, ge=0, le=2**31 - 1)  # seed of the classifier's training (a different seed: another cached classifier)
        batch: int = bounded(250, ge=1, le=MAX_BATCH)          # images per G / classifier forward pass
        min_share: float = bounded(0.01, gt=0, le=1)           # a class counts as covered when at least this share of samples is predicted as it

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
        self.check(G)
        device = device or next(G.parameters()).device
        seeds = range(self.cfg.samples)
        images = sampling.generate(G, seeds, batch_size=self.cfg.batch)  # uint8 [N, H, W, C]
        if images.shape[-1] != 1:
            raise UserError(f"mnist_fd: G made {images.shape[-1]}-channel images; it needs grayscale digits")
        c = sampling.seed_labels(seeds, G.num_classes) if G.num_classes == 10 else None
        return self.score(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), c, device)

    @torch.no_grad()
    def score(self, images: np.ndarray, c: torch.Tensor | None = None, device=None) -> MetricResult:
        """The figures of uint8 digits [N, 1, H, W] (any generator's, already sampled); c: their
        requested classes for a 10-class conditional generator, else None."""
        from hifigan.data.memory import resize_uint8
        clf = self.classifier()
        net = clf.net.to(device or "cpu")
        u8 = torch.from_numpy(resize_uint8(images, self.cfg.resolution))
        feats, logits = features_and_logits(net, to_input(u8), self.cfg.batch)
        return summarize(feats, logits, c, clf, self.cfg.min_share)
