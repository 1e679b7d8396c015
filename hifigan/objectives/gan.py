"""The original GAN objective (Goodfellow et al. 2014, "Generative Adversarial Nets",
arXiv:1406.2661): D minimises binary cross-entropy on real (label 1) and fake (label 0);
G minimises either log(1 - D(G(z))) (minimax) or -log D(G(z)) (the non-saturating variant the
paper recommends in practice). Written with softplus on logits: -log sigmoid(x) = softplus(-x).

Least-squares GAN ("lsgan"; Mao et al. 2017, "Least Squares Generative Adversarial Networks",
arXiv:1611.04076, eq. 2): with the a-b-c coding on D's raw output (no sigmoid),
D minimises 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2] and G minimises 1/2 E[(D(G(z)) - c)^2];
the defaults a = 0 (fake), b = 1 (real), c = 1 (what G wants D to believe) are the paper's eq. 9.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hifigan.config import PhaseConfig
from hifigan.objectives.base import Batch, Objective, d_labels, dmain, fakes, gmain, real_fake_logits  # noqa: F401
from hifigan.schema import bounded
from hifigan.registry import OBJECTIVES


def d_logistic(logits_real: torch.Tensor, logits_fake: torch.Tensor, smooth: float = 0.0):
    """D's BCE terms; `smooth` is one-sided label smoothing (real target 1 - smooth)."""
    real = (1 - smooth) * F.softplus(-logits_real) + smooth * F.softplus(logits_real)
    return real.mean(), F.softplus(logits_fake).mean()


def g_nonsaturating(logits_fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-logits_fake).mean()  # -log D(G(z))


def g_minimax(logits_fake: torch.Tensor) -> torch.Tensor:
    return -F.softplus(logits_fake).mean()  # log(1 - D(G(z)))


def d_least_squares(logits_real: torch.Tensor, logits_fake: torch.Tensor, a: float = 0.0, b: float = 1.0):
    """LSGAN's D terms: 1/2 E[(D(x) - b)^2] and 1/2 E[(D(G(z)) - a)^2]."""
    return 0.5 * (logits_real - b).square().mean(), 0.5 * (logits_fake - a).square().mean()


def g_least_squares(logits_fake: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """LSGAN's G loss: 1/2 E[(D(G(z)) - c)^2]."""
    return 0.5 * (logits_fake - c).square().mean()


@OBJECTIVES.register("gan")
class GANObjective(Objective):
    """Dmain: BCE on D(real) and D(G(z)); Gmain: G's loss on D(G(z))."""

    @dataclass(kw_only=True)
    class Config:
        g_loss: str = "nonsaturating"                      # "nonsaturating" (-log D(G(z))) or "minimax" (log(1 - D(G(z))))
        label_smoothing: float = bounded(0.0, ge=0, lt=1)  # one-sided: real target 1 - label_smoothing

        def __post_init__(self):
            if self.g_loss not in ("nonsaturating", "minimax"):
                raise ValueError(f"g_loss: {self.g_loss!r} is not allowed (choose from nonsaturating, minimax)")

    phases = {"Dmain": dmain(), "Gmain": gmain()}
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]

    def d_terms(self, logits_real: torch.Tensor, logits_fake: torch.Tensor):
        """(real, fake) loss terms of D."""
        return d_logistic(logits_real, logits_fake, self.cfg.label_smoothing)

    def g_term(self, logits_fake: torch.Tensor) -> torch.Tensor:
        return g_nonsaturating(logits_fake) if self.cfg.g_loss == "nonsaturating" else g_minimax(logits_fake)

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """The statistic logged for D's outputs: mean D(x) as a probability."""
        return torch.sigmoid(logits).mean()

    def d_main(self, nets: dict, batch: Batch):
        fake, c = fakes(nets["G"], batch)  # [n, C, H, W]
        logits_real, logits_fake = real_fake_logits(nets["D"], batch, fake, c)
        real, fake_term = self.d_terms(logits_real, logits_fake)
        return {"real": real, "fake": fake_term}, {"D_real": self.score(logits_real), "D_fake": self.score(logits_fake)}

    def g_main(self, nets: dict, batch: Batch):
        fake, c = fakes(nets["G"], batch)
        logits = nets["D"](fake, d_labels(nets["D"], c))
        return {"adv": self.g_term(logits)}, {"D_fake_for_G": self.score(logits)}


@OBJECTIVES.register("lsgan")
class LSGANObjective(GANObjective):
    """GANObjective's phases with LSGAN's least-squares losses on D's raw output."""

    @dataclass(kw_only=True)
    class Config:
        a: float = 0.0   # D's target for fakes
        b: float = 1.0   # D's target for reals
        c: float = 1.0   # the value G wants D to output for fakes

    def d_terms(self, logits_real: torch.Tensor, logits_fake: torch.Tensor):
        return d_least_squares(logits_real, logits_fake, self.cfg.a, self.cfg.b)

    def g_term(self, logits_fake: torch.Tensor) -> torch.Tensor:
        return g_least_squares(logits_fake, self.cfg.c)

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.mean()  # raw output: near b for reals, near a for fakes
