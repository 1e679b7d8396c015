"""InfoGAN (Chen et al. 2016, "InfoGAN: Interpretable Representation Learning by Information
Maximizing Generative Adversarial Nets", arXiv:1606.03657).

G's input is [noise (G.z_dim - cat - cont), one-hot(categorical code), continuous codes]: the
categorical code is uniform over `cat` categories, the continuous codes uniform in [-1, 1]. G knows
which entries are codes (G.code_cat / G.code_cont): the objective passes its draws explicitly, and
every sampler's standard-normal z is mapped onto the same prior by G (hifigan/nn/codes.py). The
network Q (its own section and optimizer) recovers the codes from G's image: its heads read D's
penultimate features (Q.trunk: shared, the paper; Qmain then trains G, D's trunk and Q) or Q has a
trunk of its own (Q.trunk: own; Qmain trains G and Q). The variational lower bound of section 5,
    L_I(G, Q) = E[log Q(c | G(z, c))] + H(c) <= I(c; G(z, c)),
is maximised over G and Q in phase Qmain with the loss
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
from hifigan.objectives.base import Batch, Objective, PhaseSpec, d_labels, dmain, gmain, real_fake_logits
from hifigan.objectives.gan import d_logistic, g_nonsaturating
from hifigan.schema import MAX_CLASSES, MAX_WIDTH, bounded
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
        cat: int = bounded(10, ge=0, le=MAX_CLASSES)  # categories of the categorical code (0 = none; MNIST: 10)
        cont: int = bounded(2, ge=0, le=MAX_WIDTH)    # continuous codes, uniform in [-1, 1] (0 = none)
        lambda_cat: float = bounded(1.0, ge=0)        # weight of the categorical code's cross-entropy (paper: 1)
        lambda_cont: float = bounded(1.0, ge=0)       # weight of the continuous codes' Gaussian NLL (paper: smaller if it dominates)

        def __post_init__(self):
            if self.cat < 0 or self.cont < 0 or self.cat + self.cont == 0 or self.cat == 1:
                raise ValueError(f"cat={self.cat}, cont={self.cont}: need cat = 0 or >= 2, cont >= 0, and at "
                                 f"least one code (e.g. cat: 10, cont: 2)")

    phases = {"Dmain": dmain(), "Gmain": gmain(), "Qmain": PhaseSpec("q_main", ("G", "Q"), ("G", "D", "Q"))}
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"]),
                      PhaseConfig(name="Qmain", nets=["G", "D", "Q"])]

    def check(self, nets: dict, phases) -> None:
        if "Q" not in nets:
            raise UserError("objective 'infogan' needs network Q (the code posterior): add a section "
                            "Q: {arch: <D's arch>, q_cat: 10, q_cont: 2, trunk: shared}, optim.Q and a Qmain phase")
        super().check(nets, phases)
        if not any(ph.name == "Qmain" for ph in phases):
            raise UserError("phases: objective 'infogan' without a Qmain phase never learns its codes; add "
                            "{name: Qmain, nets: [G, D, Q]}")
        Q = nets["Q"]
        for i, ph in enumerate(phases):
            if ph.name == "Qmain" and Q.on_features and "D" not in ph.nets:
                raise UserError(f"phases.{i}.nets: Q reads D's features (Q.trunk: shared), so Qmain trains D's "
                                f"trunk too: list [G, D, Q] (or give Q a trunk of its own: Q.trunk=own)")
            if ph.name == "Qmain" and not Q.on_features and "D" in ph.nets:
                raise UserError(f"phases.{i}.nets: Q has a trunk of its own, so the information loss never reaches "
                                f"D: list [G, Q]")

    def check_nets(self, nets: dict) -> None:
        G, D, Q = nets["G"], nets["D"], nets["Q"]
        cat, cont = self.cfg.cat, self.cfg.cont
        g_cat, g_cont = getattr(G, "code_cat", 0), getattr(G, "code_cont", 0)
        if (g_cat, g_cont) != (cat, cont):
            raise UserError(f"objective 'infogan' needs G.code_cat = {cat} and G.code_cont = {cont} (got "
                            f"{g_cat}, {g_cont}): G must know which entries of z are codes; set them in G")
        if G.z_dim <= cat + cont:
            raise UserError(f"objective 'infogan': G.z_dim ({G.z_dim}) must hold the codes (cat {cat} + cont "
                            f"{cont}) plus the noise; raise G.z_dim or lower objective.cat / objective.cont")
        if (Q.q_cat, Q.q_cont) != (cat, cont):
            raise UserError(f"objective 'infogan' needs Q.q_cat = {cat} and Q.q_cont = {cont} (got "
                            f"{Q.q_cat}, {Q.q_cont}); set them in Q")
        if Q.on_features and getattr(D, "feature_dim", None) != Q.in_features:
            raise UserError(f"Q.trunk=shared reads D's features ({getattr(D, 'feature_dim', None)} wide), but Q "
                            f"expects {Q.in_features}: give Q the resolution / width / max_width of D")

    def latent(self, G, batch: Batch):
        """(z [n, z_dim], class labels or None, category [n] or None, continuous codes [n, cont] or None):
        noise ~ N(0, I), category uniform, codes uniform in [-1, 1], passed to G explicitly."""
        cat, cont = self.cfg.cat, self.cfg.cont
        z = batch.rand.randn(G.z_dim)
        code = batch.rand.randint(cat) if cat else None
        codes = batch.rand.rand(cont) * 2 - 1 if cont else None
        c = batch.rand.randint(G.num_classes) if G.num_classes else None
        return z, c, code, codes

    def fake(self, G, batch: Batch):
        z, c, code, codes = self.latent(G, batch)
        return G(z, c, codes=(code, codes)), c, code, codes  # [n, C, H, W], ...

    def d_main(self, nets: dict, batch: Batch):
        fake, c, _, _ = self.fake(nets["G"], batch)
        logits_real, logits_fake = real_fake_logits(nets["D"], batch, fake, c)
        real, fake_term = d_logistic(logits_real, logits_fake)
        stats = {"D_real": torch.sigmoid(logits_real).mean(), "D_fake": torch.sigmoid(logits_fake).mean()}
        return {"real": real, "fake": fake_term}, stats

    def g_main(self, nets: dict, batch: Batch):
        fake, c, _, _ = self.fake(nets["G"], batch)
        logits = nets["D"](fake, d_labels(nets["D"], c))
        return {"adv": g_nonsaturating(logits)}, {"D_fake_for_G": torch.sigmoid(logits).mean()}

    def q_main(self, nets: dict, batch: Batch):
        """The information loss (it reaches G through the fake, and Q, and D's trunk when Q shares it)."""
        D, Q = nets["D"], nets["Q"]
        fake, c, code, codes = self.fake(nets["G"], batch)
        out = Q(D(fake, d_labels(D, c), heads=("features",))["features"]) if Q.on_features else Q(fake, d_labels(Q, c))
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
