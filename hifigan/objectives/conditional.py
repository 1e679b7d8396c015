"""Class-conditional objectives with a classifier in the loop.

- "cgan_classifier": a conditional G, an ordinary (unconditional or conditional) D and a classifier
  network C (its own section and optimizer, sharing nothing with D). C learns on real images and
  their labels (phase Cmain, nets [C]); G is pushed to make images that C assigns to the
  requested class: G's loss = adversarial + class_weight * CE(C(G(z, c)), c). With
  `adversarial: wgan` and a Dmain:Gmain:Cmain = 5:1:1 schedule plus `optim.D.weight_clip` this is
  "WGAN + classifier" (Arjovsky et al. 2017, "Wasserstein GAN", arXiv:1701.07875, for the critic).
- "acgan" (Odena et al. 2017, "Conditional Image Synthesis with Auxiliary Classifier GANs",
  arXiv:1610.09585, section 3): D has an auxiliary classifier on its trunk (`D.aux_classes` = K,
  head "class_logits"); D minimises the source loss + CE(class_logits(x), c_real) +
  CE(class_logits(G(z, c)), c); G minimises its source loss + CE(class_logits(G(z, c)), c).

Real labels of -1 mark unlabeled images (data.labels_per_class); the cross-entropy on reals averages
over the labelled ones only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hifigan.config import PhaseConfig
from hifigan.errors import UserError
from hifigan.objectives.base import Batch, Objective, PhaseSpec, d_labels, dmain, fakes, gmain, real_fake_logits
from hifigan.objectives.gan import d_logistic, g_nonsaturating
from hifigan.objectives.wgan import critic_loss, g_wasserstein
from hifigan.schema import bounded
from hifigan.registry import OBJECTIVES

ADVERSARIAL = ("gan", "wgan")


def labeled_cross_entropy(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the samples with a label >= 0 (-1 = unlabeled); 0 when none has one.
    Every sample stays in the graph, so all ranks run the same backward."""
    mask = (c >= 0).to(logits.dtype)
    ce = F.cross_entropy(logits, c.clamp(min=0), reduction="none")  # [N]
    return (ce * mask).sum() / mask.sum().clamp(min=1)


def labeled_accuracy(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Share of the labelled samples (label >= 0) whose argmax is their label; 0 when none has one."""
    mask = c >= 0
    hits = (logits.detach().argmax(1) == c) & mask
    return hits.float().sum() / mask.float().sum().clamp(min=1)


def d_adversarial(kind: str, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> dict:
    """D's source loss terms: BCE ("gan") or the critic loss ("wgan")."""
    if kind == "wgan":
        return {"wdist": critic_loss(logits_real, logits_fake)}
    real, fake = d_logistic(logits_real, logits_fake)
    return {"real": real, "fake": fake}


def g_adversarial(kind: str, logits_fake: torch.Tensor) -> torch.Tensor:
    """G's source loss: non-saturating -log D(G(z)) ("gan") or -D(G(z)) ("wgan")."""
    return g_wasserstein(logits_fake) if kind == "wgan" else g_nonsaturating(logits_fake)


def score(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """The logged statistic of D's source output: a probability for "gan", the raw critic value for "wgan"."""
    return logits.mean() if kind == "wgan" else torch.sigmoid(logits).mean()


def _check_adversarial(kind: str) -> None:
    if kind not in ADVERSARIAL:
        raise ValueError(f"adversarial: {kind!r} is not allowed (choose from {', '.join(ADVERSARIAL)})")


def _real_labels(batch: Batch, name: str) -> torch.Tensor:
    if batch.c is None:
        raise UserError(f"objective {name!r} needs class labels for the real images, and the data has none; "
                        f"use a labelled data set (MNIST's built-in digits are labelled)")
    return batch.c


@OBJECTIVES.register("cgan_classifier")
class CGANClassifierObjective(Objective):
    """Dmain: source loss; Cmain: C's cross-entropy on labelled reals; Gmain: source + class_weight * CE(C(G(z, c)), c)."""

    @dataclass(kw_only=True)
    class Config:
        adversarial: str = "gan"                  # "gan" (BCE, non-saturating G) or "wgan" (critic; clip with optim.D.weight_clip)
        class_weight: float = bounded(1.0, ge=0)  # weight of C's cross-entropy on G(z, c) in G's loss

        def __post_init__(self):
            _check_adversarial(self.adversarial)

    phases = {"Dmain": dmain(), "Cmain": PhaseSpec("c_main", ("C",), ("C",), reals="draw"),
              "Gmain": gmain(requires=("G", "D", "C"))}
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Cmain", nets=["C"]),
                      PhaseConfig(name="Gmain", nets=["G"])]

    def check_nets(self, nets: dict) -> None:
        G, C = nets["G"], nets["C"]
        if not G.num_classes:
            raise UserError("objective 'cgan_classifier' needs a conditional G; set G.num_classes (10 for MNIST)")
        if C.classes != G.num_classes:
            raise UserError(f"objective 'cgan_classifier' needs C.classes = G.num_classes ({G.num_classes}), "
                            f"got {C.classes}; set C.classes")

    def c_main(self, nets: dict, batch: Batch):
        """Only C: the real images and their labels, no G, no D."""
        c_real = _real_labels(batch, "cgan_classifier")
        logits = nets["C"](batch.img)  # [n, K]
        return {"cls_real": labeled_cross_entropy(logits, c_real)}, {"C_acc_real": labeled_accuracy(logits, c_real)}

    def d_main(self, nets: dict, batch: Batch):
        kind = self.cfg.adversarial
        fake, c = fakes(nets["G"], batch)  # [n, C, H, W]
        logits_real, logits_fake = real_fake_logits(nets["D"], batch, fake, c)
        return d_adversarial(kind, logits_real, logits_fake), \
            {"D_real": score(kind, logits_real), "D_fake": score(kind, logits_fake)}

    def g_main(self, nets: dict, batch: Batch):
        kind, D = self.cfg.adversarial, nets["D"]
        fake, c = fakes(nets["G"], batch)
        logits, cls_logits = D(fake, d_labels(D, c)), nets["C"](fake)
        losses = {"adv": g_adversarial(kind, logits), "cls": F.cross_entropy(cls_logits, c) * self.cfg.class_weight}
        return losses, {"D_fake_for_G": score(kind, logits), "C_acc_fake": labeled_accuracy(cls_logits, c)}


@OBJECTIVES.register("acgan")
class ACGANObjective(Objective):
    """Dmain: source loss + CE of the auxiliary classifier on reals and fakes; Gmain: source loss + CE on fakes."""

    @dataclass(kw_only=True)
    class Config:
        adversarial: str = "gan"                  # "gan" (BCE, non-saturating G; the paper) or "wgan" (critic)
        class_weight: float = bounded(1.0, ge=0)  # weight of the class log-likelihood terms L_C in D's and G's losses

        def __post_init__(self):
            _check_adversarial(self.adversarial)

    phases = {"Dmain": dmain(), "Gmain": gmain()}
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]
    heads = ("logits", "class_logits")

    def check_nets(self, nets: dict) -> None:
        G, D = nets["G"], nets["D"]
        if not G.num_classes:
            raise UserError("objective 'acgan' needs a conditional G; set G.num_classes (10 for MNIST)")
        if getattr(D, "aux_classes", 0) != G.num_classes:
            raise UserError(f"objective 'acgan' needs D.aux_classes = G.num_classes ({G.num_classes}), "
                            f"got {getattr(D, 'aux_classes', 0)}; set D.aux_classes")

    def d_main(self, nets: dict, batch: Batch):
        kind, w = self.cfg.adversarial, self.cfg.class_weight
        fake, c = fakes(nets["G"], batch)  # [n, C, H, W]
        c_real = _real_labels(batch, "acgan")
        real, out = real_fake_logits(nets["D"], batch, fake, c, heads=self.heads)
        losses = d_adversarial(kind, real["logits"], out["logits"])
        losses["cls_real"] = labeled_cross_entropy(real["class_logits"], c_real) * w
        losses["cls_fake"] = F.cross_entropy(out["class_logits"], c) * w
        return losses, {"D_real": score(kind, real["logits"]), "D_fake": score(kind, out["logits"]),
                        "acc_real": labeled_accuracy(real["class_logits"], c_real),
                        "acc_fake": labeled_accuracy(out["class_logits"], c)}

    def g_main(self, nets: dict, batch: Batch):
        kind, w, D = self.cfg.adversarial, self.cfg.class_weight, nets["D"]
        fake, c = fakes(nets["G"], batch)
        out = D(fake, d_labels(D, c), heads=self.heads)
        losses = {"adv": g_adversarial(kind, out["logits"]), "cls": F.cross_entropy(out["class_logits"], c) * w}
        return losses, {"D_fake_for_G": score(kind, out["logits"]),
                        "acc_fake_for_G": labeled_accuracy(out["class_logits"], c)}
