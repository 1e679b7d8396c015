"""InfoGAN (Chen et al. 2016, "InfoGAN: Interpretable Representation Learning by Information
Maximizing Generative Adversarial Nets", arXiv:1606.03657).

G's input is [noise (G.z_dim - cat - cont), one-hot(categorical code), continuous codes]: the
categorical code is uniform over `cat` categories, the continuous codes uniform in [-1, 1]. G knows
which entries are codes (G.code_cat / G.code_cont): the objective passes its draws explicitly, and
every sampler's standard-normal z is mapped onto the same prior by G (hifigan/nn/codes.py). A
network Q (D's "q_cat" / "q_cont" heads, on D's trunk or on a separate one: a D config choice)
recovers the codes from G's image. The variational lower bound of section 5,
    L_I(G, Q) = E[log Q(c | G(z, c))] + H(c) <= I(c; G(z, c)),
is maximised over G and Q in phase Qmain (nets [G, D]) with the loss
    lambda_cat * CE(q_cat, code) + lambda_cont * 0.5 ||q_cont - codes||^2,
the second term being the Gaussian negative log-likelihood of the continuous codes with a fixed
unit variance, up to a constant. Dmain and Gmain are the usual GAN (BCE, non-saturating G).
For the categorical code H(c) = log(cat), so log(cat) - CE estimates the bound on the batch; it
is logged as `mi_cat` and is at most log(cat) (a Q that recovers the category perfectly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hifigan.config import PhaseConfig
from hifigan.errors import UserError
from hifigan.objectives.base import Batch, Objective
from hifigan.objectives.gan import d_logistic, g_nonsaturating
from hifigan.registry import OBJECTIVES


def mi_lower_bound(q_logits: torch.Tensor, codes: torch.Tensor, num_categories: int) -> torch.Tensor:
    """H(c) - CE(Q, c) = log(num_categories) + mean log Q(c | x): InfoGAN's lower bound on I(c; x)
    for a uniform categorical code; q_logits [N, num_categories], codes [N] int64."""
    return math.log(num_categories) - F.cross_entropy(q_logits, codes)


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[N]: -log N(target; mean, I) without its constant (d/2) log(2 pi), i.e. 0.5 ||target - mean||^2."""
    return 0.5 * (target - mean).square().sum(1)


@OBJECTIVES.register("infogan")
class InfoGANObjective(Objective):
    """Dmain: BCE; Gmain: non-saturating; Qmain (G and Q): lambda_cat * CE + lambda_cont * Gaussian NLL."""

    @dataclass(kw_only=True)
    class Config:
        cat: int = 10               # categories of the categorical code (0 = none; MNIST: 10)
        cont: int = 2               # continuous codes, uniform in [-1, 1] (0 = none)
        lambda_cat: float = 1.0     # weight of the categorical code's cross-entropy (paper: 1)
        lambda_cont: float = 1.0    # weight of the continuous codes' Gaussian NLL (paper: smaller if it dominates)

        def __post_init__(self):
            if self.cat < 0 or self.cont < 0 or self.cat + self.cont == 0 or self.cat == 1:
                raise ValueError(f"cat={self.cat}, cont={self.cont}: need cat = 0 or >= 2, cont >= 0, and at "
                                 f"least one code (e.g. cat: 10, cont: 2)")

    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"]),
                      PhaseConfig(name="Qmain", nets=["G", "D"])]

    def check(self, G, D) -> None:
        cat, cont = self.cfg.cat, self.cfg.cont
        g_cat, g_cont = getattr(G, "code_cat", 0), getattr(G, "code_cont", 0)
        if (g_cat, g_cont) != (cat, cont):
            raise UserError(f"objective 'infogan' needs G.code_cat = {cat} and G.code_cont = {cont} (got "
                            f"{g_cat}, {g_cont}): G must know which entries of z are codes; set them in G")
        if G.z_dim <= cat + cont:
            raise UserError(f"objective 'infogan': G.z_dim ({G.z_dim}) must hold the codes (cat {cat} + cont "
                            f"{cont}) plus the noise; raise G.z_dim or lower objective.cat / objective.cont")
        if getattr(D, "q_cat", 0) != cat or getattr(D, "q_cont", 0) != cont:
            raise UserError(f"objective 'infogan' needs D.q_cat = {cat} and D.q_cont = {cont} (got "
                            f"{getattr(D, 'q_cat', 0)}, {getattr(D, 'q_cont', 0)}); set them in D")

    def latent(self, G, batch: Batch):
        """(z [n, z_dim], class labels or None, category [n] or None, continuous codes [n, cont] or None):
        noise ~ N(0, I), category uniform, codes uniform in [-1, 1], passed to G explicitly."""
        cat, cont = self.cfg.cat, self.cfg.cont
        z = batch.rand.randn(G.z_dim)
        code = batch.rand.randint(cat) if cat else None
        codes = batch.rand.rand(cont) * 2 - 1 if cont else None
        c = batch.rand.randint(G.num_classes) if G.num_classes else None
        return z, c, code, codes

    def __call__(self, phase: str, nets: dict, batch: Batch):
        G, D = nets["G"], nets["D"]
        self.check(G, D)
        z, c, code, codes = self.latent(G, batch)
        fake = G(z, c, codes=(code, codes))  # [n, C, H, W]
        dc = c if D.num_classes else None
        if phase == "Dmain":
            logits_real = D(batch.img, batch.c if D.num_classes else None)
            logits_fake = D(fake.detach(), dc)
            real, fake_term = d_logistic(logits_real, logits_fake)
            stats = {"D_real": torch.sigmoid(logits_real).mean(), "D_fake": torch.sigmoid(logits_fake).mean()}
            return {"real": real, "fake": fake_term}, stats
        if phase == "Gmain":
            logits = D(fake, dc)
            return {"adv": g_nonsaturating(logits)}, {"D_fake_for_G": torch.sigmoid(logits).mean()}
        if phase == "Qmain":
            return self.info(D, fake, dc, code, codes)
        raise ValueError(f"objective 'infogan' has no phase {phase!r} (it knows Dmain, Gmain, Qmain)")

    def info(self, D, fake, dc, code, codes):
        """Qmain's losses (they reach G through `fake` and Q through D's heads) and statistics."""
        heads = tuple(h for h, n in (("q_cat", self.cfg.cat), ("q_cont", self.cfg.cont)) if n)
        out = D(fake, dc, heads=heads)
        losses, stats = {}, {}
        if code is not None:
            q = out["q_cat"]  # [n, cat]
            losses["info_cat"] = F.cross_entropy(q, code) * self.cfg.lambda_cat
            stats["mi_cat"] = mi_lower_bound(q.detach(), code, self.cfg.cat)
            stats["q_cat_acc"] = (q.detach().argmax(1) == code).float().mean()
        if codes is not None:
            nll = gaussian_nll(out["q_cont"], codes).mean()
            losses["info_cont"] = nll * self.cfg.lambda_cont
            stats["q_cont_mse"] = (out["q_cont"].detach() - codes).square().mean()
        return losses, stats
