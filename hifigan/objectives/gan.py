"""The original GAN objective (Goodfellow et al. 2014, "Generative Adversarial Nets",
arXiv:1406.2661): D minimises binary cross-entropy on real (label 1) and fake (label 0);
G minimises either log(1 - D(G(z))) (minimax) or -log D(G(z)) (the non-saturating variant the
paper recommends in practice). Written with softplus on logits: -log sigmoid(x) = softplus(-x).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hifigan.config import PhaseConfig
from hifigan.objectives.base import Batch, Objective
from hifigan.registry import OBJECTIVES


def d_logistic(logits_real: torch.Tensor, logits_fake: torch.Tensor, smooth: float = 0.0):
    """D's BCE terms; `smooth` is one-sided label smoothing (real target 1 - smooth)."""
    real = (1 - smooth) * F.softplus(-logits_real) + smooth * F.softplus(logits_real)
    return real.mean(), F.softplus(logits_fake).mean()


def g_nonsaturating(logits_fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-logits_fake).mean()  # -log D(G(z))


def g_minimax(logits_fake: torch.Tensor) -> torch.Tensor:
    return -F.softplus(logits_fake).mean()  # log(1 - D(G(z)))


def fake_inputs(G, batch: Batch):
    """z and, for conditional generators, uniformly drawn class labels."""
    z = batch.rand.randn(G.z_dim)
    c = batch.rand.randint(G.num_classes) if G.num_classes else None
    return z, c


@OBJECTIVES.register("gan")
class GANObjective(Objective):
    """Dmain: BCE on D(real) and D(G(z)); Gmain: G's loss on D(G(z))."""

    @dataclass(kw_only=True)
    class Config:
        g_loss: str = "nonsaturating"   # "nonsaturating" (-log D(G(z))) or "minimax" (log(1 - D(G(z))))
        label_smoothing: float = 0.0    # one-sided: real target 1 - label_smoothing

        def __post_init__(self):
            if self.g_loss not in ("nonsaturating", "minimax"):
                raise ValueError(f"g_loss: {self.g_loss!r} is not allowed (choose from nonsaturating, minimax)")

    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]

    def __call__(self, phase: str, nets: dict, batch: Batch):
        G, D = nets["G"], nets["D"]
        z, c = fake_inputs(G, batch)
        fake = G(z, c)  # [n, C, H, W]
        if phase == "Dmain":
            logits_real = D(batch.img, batch.c if D.num_classes else None)
            logits_fake = D(fake.detach(), c)
            real, fake_term = d_logistic(logits_real, logits_fake, self.cfg.label_smoothing)
            stats = {"D_real": torch.sigmoid(logits_real).mean(), "D_fake": torch.sigmoid(logits_fake).mean()}
            return {"real": real, "fake": fake_term}, stats
        if phase == "Gmain":
            logits = D(fake, c)
            g = g_nonsaturating(logits) if self.cfg.g_loss == "nonsaturating" else g_minimax(logits)
            return {"adv": g}, {"D_fake_for_G": torch.sigmoid(logits).mean()}
        raise ValueError(f"objective 'gan' has no phase {phase!r} (it knows Dmain, Gmain)")
