"""The published evaluation protocols, registered by name (the StyleGAN2-ADA names):

    fid50k_full   FID of 50k generated images against the whole training set, 2048-d Inception
                  pool features (Heusel et al. 2017, arXiv:1706.08500; hifigan/metrics/frechet.py)
    kid50k_full   KID, 100 subsets of 1000, cubic polynomial kernel, unbiased (hifigan/metrics/kid.py);
                  the real set capped at 1M images
    pr50k3_full   precision and recall, k = 3, VGG16 fc2 features, real set capped at 200k (pr.py)
    ppl2_wend     perceptual path length in w, endpoints, eps 1e-4, LPIPS on VGG16 (ppl.py)
    is50k         Inception Score of 50k generated images in 10 splits (isc.py)

Each takes its feature network from a local file (`inception`, `vgg`, `lpips` options); real features
are cached (features.py). During training (`metrics: [fid50k_full]`, options under `metric_options`)
every rank generates its share and the features are gathered; `launch/metrics.py RUN` computes the
same figures from a checkpoint. The sample counts are the protocol's unless an option or
`--samples` changes them (the figure keeps its name; `<name>_samples` says how many were used).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from hifigan.errors import UserError
from hifigan.metrics.base import MetricResult
from hifigan.metrics.features import EvalContext, file_digest, generated, my_chunks, real_features
from hifigan.metrics.frechet import frechet_distance, gaussian_fit
from hifigan.registry import METRICS
from hifigan.schema import MAX_BATCH, MAX_COUNT, bounded


class Protocol:
    """Shared by the protocol metrics: the lazily loaded feature network and the real features."""
    fixed_protocol = True   # build_metrics leaves `samples` alone (log.metric_samples is for smoke metrics)
    needs_context = True
    name = ""

    def __init__(self, cfg):
        self.cfg = cfg
        self._net = None
        self._digest = None

    def check(self, G) -> None:
        self.network()  # a missing or wrong weights file fails before any training

    def network(self):
        raise NotImplementedError

    def digest(self) -> str:
        if self._digest is None:
            self._digest = file_digest(self.weights_path())
        return self._digest

    def real(self, ctx: EvalContext, fn, kind: str, limit, device) -> np.ndarray:
        if ctx is None or ctx.data is None:
            raise UserError(f"{self.name} compares with the training data: run it on a run "
                            f"(launch/metrics.py RUN) or give --real")
        return real_features(ctx.data, fn, self.digest(), kind, limit, ctx.dist, device)

    def fake(self, G, fn, ctx: EvalContext, device) -> np.ndarray:
        return generated(G, self.cfg.samples, fn, (ctx or EvalContext()).dist, self.cfg.batch, device)


@dataclass(kw_only=True)
class InceptionConfig:
    samples: int = bounded(50_000, ge=2, le=MAX_COUNT)     # generated images (seeds 0..samples-1)
    inception: Optional[str] = None                        # FID Inception weights file (see inception.py)
    batch: int = bounded(64, ge=1, le=MAX_BATCH)           # images per G / Inception forward pass
    max_real: Optional[int] = bounded(None, ge=2, le=MAX_COUNT)  # real images used (None: all)


class InceptionProtocol(Protocol):
    def weights_path(self):
        return self.cfg.inception

    def network(self):
        if self._net is None:
            from hifigan.metrics.inception import load_inception
            self._net = load_inception(self.cfg.inception)
        return self._net

    def features(self, G, ctx, device, real: bool = True, probs: bool = False):
        net = self.network().to(device)
        fn = net.probs if probs else net.pool
        fake = self.fake(G, fn, ctx, device)
        return fake, (self.real(ctx, net.pool, "inception-pool", self.cfg.max_real, device) if real else None)


@METRICS.register("fid50k_full")
class FID50kFull(InceptionProtocol):
    """FID, 50k generated vs the full training set (module docstring)."""
    name = "fid50k_full"
    Config = InceptionConfig

    @torch.no_grad()
    def __call__(self, G, device=None, ctx: EvalContext | None = None) -> MetricResult:
        fake, real = self.features(G, ctx, device or next(G.parameters()).device)
        fid = frechet_distance(gaussian_fit(real), gaussian_fit(fake))
        return MetricResult({self.name: fid}, {f"{self.name}_samples": len(fake), f"{self.name}_real": len(real)})


@METRICS.register("kid50k_full")
class KID50kFull(InceptionProtocol):
    """KID, 100 subsets of 1000 (module docstring)."""
    name = "kid50k_full"

    @dataclass(kw_only=True)
    class Config(InceptionConfig):
        max_real: Optional[int] = bounded(1_000_000, ge=2, le=MAX_COUNT)  # real images used (the protocol's cap)
        subsets: int = bounded(100, ge=1, le=MAX_COUNT)          # random subsets averaged
        subset_size: int = bounded(1000, ge=2, le=MAX_COUNT)     # images per subset from each set
        seed: int = bounded(2020, ge=0, le=2**32 - 1)            # numpy RandomState of the subsets (torch-fidelity's)

    @torch.no_grad()
    def __call__(self, G, device=None, ctx: EvalContext | None = None) -> MetricResult:
        from hifigan.metrics.kid import kernel_inception_distance
        fake, real = self.features(G, ctx, device or next(G.parameters()).device)
        mean, std = kernel_inception_distance(real, fake, self.cfg.subsets, self.cfg.subset_size, self.cfg.seed)
        return MetricResult({self.name: mean}, {f"{self.name}_std": std, f"{self.name}_samples": len(fake)})


@METRICS.register("is50k")
class IS50k(InceptionProtocol):
    """Inception Score of 50k generated images, 10 splits (module docstring)."""
    name = "is50k"

    @dataclass(kw_only=True)
    class Config(InceptionConfig):
        splits: int = bounded(10, ge=1, le=MAX_COUNT)            # contiguous splits of the samples

    @torch.no_grad()
    def __call__(self, G, device=None, ctx: EvalContext | None = None) -> MetricResult:
        from hifigan.metrics.isc import inception_score
        probs, _ = self.features(G, ctx, device or next(G.parameters()).device, real=False, probs=True)
        mean, std = inception_score(probs, self.cfg.splits)
        return MetricResult({self.name: mean}, {f"{self.name}_std": std, f"{self.name}_samples": len(probs)})


@METRICS.register("pr50k3_full")
class PR50k3Full(Protocol):
    """Precision and recall, k = 3, VGG16 features (module docstring)."""
    name = "pr50k3_full"

    @dataclass(kw_only=True)
    class Config:
        samples: int = bounded(50_000, ge=4, le=MAX_COUNT)       # generated images (seeds 0..samples-1)
        vgg: Optional[str] = None                                # VGG16 weights file (see vgg.py)
        k: int = bounded(3, ge=1, le=1000)                       # nearest neighbour defining each ball
        max_real: Optional[int] = bounded(200_000, ge=4, le=MAX_COUNT)  # real images used (the protocol's cap)
        batch: int = bounded(64, ge=1, le=MAX_BATCH)             # images per G / VGG forward pass

    def weights_path(self):
        return self.cfg.vgg

    def network(self):
        if self._net is None:
            from hifigan.metrics.vgg import load_vgg16
            self._net = load_vgg16(self.cfg.vgg)
        return self._net

    @torch.no_grad()
    def __call__(self, G, device=None, ctx: EvalContext | None = None) -> MetricResult:
        from hifigan.metrics.pr import precision_recall
        device = device or next(G.parameters()).device
        net = self.network().to(device)
        fake = self.fake(G, net.fc2, ctx, device)
        real = self.real(ctx, net.fc2, "vgg16-fc2", self.cfg.max_real, device)
        p, r = precision_recall(real, fake, self.cfg.k)
        return MetricResult({f"{self.name}_precision": p, f"{self.name}_recall": r},
                            {f"{self.name}_samples": len(fake), f"{self.name}_real": len(real)})


@METRICS.register("ppl2_wend")
class PPL2WEnd(Protocol):
    """Perceptual path length in w at the path endpoints (module docstring of ppl.py)."""
    name = "ppl2_wend"

    @dataclass(kw_only=True)
    class Config:
        samples: int = bounded(50_000, ge=100, le=MAX_COUNT, why="the 1st-99th percentile filter needs 100")  # latent pairs
        vgg: Optional[str] = None                                # VGG16 weights file (see vgg.py)
        lpips: Optional[str] = None                              # LPIPS linear heads (None: unit weights)
        epsilon: float = bounded(1e-4, gt=0, le=1)               # step along the path
        space: str = "w"                                         # w (lerp) or z (slerp)
        sampling: str = "end"                                    # end (t = 0) or full (t ~ U(0, 1))
        seed: int = bounded(0, ge=0, le=2**31 - 1)               # draws z pairs, classes and t
        batch: int = bounded(8, ge=1, le=MAX_BATCH)              # pairs per forward pass

        def __post_init__(self):
            if self.space not in ("w", "z") or self.sampling not in ("end", "full"):
                raise ValueError(f"space={self.space!r}, sampling={self.sampling!r}: space is w or z, sampling end or full")

    def weights_path(self):
        return self.cfg.vgg

    def network(self):
        if self._net is None:
            from hifigan.metrics.vgg import load_lpips
            self._net = load_lpips(self.cfg.vgg, self.cfg.lpips)
        return self._net

    def check(self, G) -> None:
        from hifigan.sampling.hooks import require_style
        require_style(G, "ppl2_wend")
        super().check(G)

    @torch.no_grad()
    def __call__(self, G, device=None, ctx: EvalContext | None = None) -> MetricResult:
        from hifigan.metrics import ppl
        self.check(G)
        device = device or next(G.parameters()).device
        dist = (ctx or EvalContext()).dist
        lpips = self.network().to(device)
        z0, z1, c, t = ppl.draws(self.cfg.samples, G.z_dim, G.num_classes, self.cfg.sampling, self.cfg.seed)
        mine, out = [], []
        was = G.training
        G.eval()
        try:
            for idx in my_chunks(self.cfg.samples, self.cfg.batch, dist):
                mine += idx
                cc = None if c is None else c[idx].to(device)
                out.append(ppl.path_lengths(G, lpips, z0[idx].to(device), z1[idx].to(device), cc,
                                            t[idx].to(device), self.cfg.space, self.cfg.epsilon).cpu())
        finally:
            G.train(was)
        local = torch.cat(out).numpy() if out else np.zeros(0)
        d = np.empty(self.cfg.samples)
        for idx, part in dist.gather((mine, local)):
            d[idx] = part
        return MetricResult({self.name: ppl.filtered_mean(d)}, {f"{self.name}_samples": len(d),
                                                                f"{self.name}_lpips": "learned" if lpips.learned else "unit weights"})
