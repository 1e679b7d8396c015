"""The semi-supervised GAN (Odena 2016, "Semi-Supervised Learning with Generative Adversarial
Networks", arXiv:1606.01583; Salimans et al. 2016, "Improved Techniques for Training GANs",
arXiv:1606.03498, section 5).

D is a (K+1)-way classifier (D's "class_logits" head with `D.aux_classes` = K + 1): the K real
classes and, at index K, "fake". With l = D's K+1 logits, p_fake(x) = softmax(l)[K] and
log(1 - p_fake(x)) = logsumexp(l[:K]) - logsumexp(l). D minimises
    sup_weight   * E_labelled [CE_{K+1}(l(x), y)]
  + unsup_weight * (E_unlabelled [-log(1 - p_fake(x))] + E_z [-log p_fake(G(z))]),
each expectation a mean over its own samples of the batch (label -1 = unlabelled, see
data.labels_per_class); G minimises the non-saturating E_z [-log(1 - p_fake(G(z)))].
The classifier is argmax over the first K logits (benchmarks/sgan_accuracy.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hifigan.config import PhaseConfig
from hifigan.errors import UserError
from hifigan.objectives.base import Batch, Objective, dmain, fakes, gmain
from hifigan.objectives.conditional import labeled_accuracy, labeled_cross_entropy
from hifigan.schema import bounded
from hifigan.registry import OBJECTIVES


def log_p_fake(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p_fake, log(1 - p_fake)), each [N], from [N, K+1] logits whose last index is "fake"."""
    lse = logits.logsumexp(1)
    return logits[:, -1] - lse, logits[:, :-1].logsumexp(1) - lse


def sgan_d_losses(logits_real: torch.Tensor, c: torch.Tensor | None, logits_fake: torch.Tensor) -> dict:
    """D's three terms: CE over K+1 classes on labelled reals, -log(1 - p_fake) on unlabelled reals,
    -log p_fake on fakes; each the mean over its own samples (0 when there are none)."""
    if c is None:
        c = torch.full(logits_real.shape[:1], -1, dtype=torch.long, device=logits_real.device)
    unlabeled = (c < 0).to(logits_real.dtype)
    _, real_not_fake = log_p_fake(logits_real)
    fake_is_fake, _ = log_p_fake(logits_fake)
    return {"sup": labeled_cross_entropy(logits_real, c),
            "real": -(real_not_fake * unlabeled).sum() / unlabeled.sum().clamp(min=1),
            "fake": -fake_is_fake.mean()}


def sgan_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating: -log(1 - p_fake(G(z)))."""
    return -log_p_fake(logits_fake)[1].mean()


@OBJECTIVES.register("sgan")
class SGANObjective(Objective):
    """Dmain: (K+1)-way CE on labelled reals, real-vs-fake on unlabelled reals and fakes; Gmain: -log(1 - p_fake(G(z)))."""

    @dataclass(kw_only=True)
    class Config:
        sup_weight: float = bounded(1.0, ge=0)    # weight of the supervised cross-entropy on labelled reals
        unsup_weight: float = bounded(1.0, ge=0)  # weight of the unsupervised real-vs-fake terms

    phases = {"Dmain": dmain(), "Gmain": gmain()}
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]

    def check_nets(self, nets: dict) -> None:
        D = nets["D"]
        if getattr(D, "aux_classes", 0) < 2:
            raise UserError(f"objective 'sgan' needs D.aux_classes = K + 1 (the K classes and 'fake'; 11 for "
                            f"MNIST), got {getattr(D, 'aux_classes', 0)}; set D.aux_classes")
        if D.num_classes:
            raise UserError("objective 'sgan' needs an unconditional D (it predicts the class); set D.num_classes: 0")

    def d_main(self, nets: dict, batch: Batch):
        D = nets["D"]
        fake, _ = fakes(nets["G"], batch)  # [n, C, H, W]
        real = D(batch.img, heads=("class_logits",))["class_logits"]  # [n, K+1]
        out = D(fake.detach(), heads=("class_logits",))["class_logits"]
        terms = sgan_d_losses(real, batch.c, out)
        losses = {"sup": terms["sup"] * self.cfg.sup_weight, "real": terms["real"] * self.cfg.unsup_weight,
                  "fake": terms["fake"] * self.cfg.unsup_weight}
        stats = {"p_fake_real": log_p_fake(real.detach())[0].exp().mean(),
                 "p_fake_fake": log_p_fake(out.detach())[0].exp().mean()}
        if batch.c is not None:
            stats["acc_labeled"] = labeled_accuracy(real[:, :-1], batch.c)
        return losses, stats

    def g_main(self, nets: dict, batch: Batch):
        fake, _ = fakes(nets["G"], batch)
        out = nets["D"](fake, heads=("class_logits",))["class_logits"]
        return {"adv": sgan_g_loss(out)}, {"p_fake_for_G": log_p_fake(out.detach())[0].exp().mean()}
