"""Augmenting what D sees, and ADA's controller of the augmentation probability p.

The recipe's `augment:` section picks a policy by name (registry AUGMENTS):
  none         D sees the images as they are (the default).
  ada          the differentiable pipeline of ADA (hifigan/nn/augment.py; Karras et al. 2020,
               "Training Generative Adversarial Networks with Limited Data", arXiv:2006.06676),
               with p adjusted during training (below) or fixed (`p: 0.2`).
  diffaugment  DiffAugment (Zhao et al. 2020, arXiv:2006.10738): color, translation, cutout on every
               image, always on (hifigan/nn/diffaugment.py); cheaper, no controller.
Every image D sees goes through it: reals and fakes in Dmain, the reals of Dreg (R1 is the gradient
with respect to the image before augmentation) and the fakes of Gmain. The objective applies it;
objectives that do not support augmentation refuse a policy other than none when the run is built.

The controller (section 2.3 of the paper): D's outputs on the reals are summarised by
r_t = E[sign(D(x))] over every rank since the last adjustment; every `interval` steps
p <- clamp(p + sign(r_t - target) * (images shown since then) / (speed_kimg * 1000), 0, 1),
so p can go from 0 to 1 in `speed_kimg` thousand images (500 in the paper), and r_t is pulled to
the target (0.6). p, the sign accumulators and the image count of the last adjustment are stored in
the objective's checkpoint state, so a resumed run continues with the same p.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from hifigan.nn.augment import AdaAugment
from hifigan.nn.diffaugment import DiffAugment, NoAugment
from hifigan.registry import AUGMENTS
from hifigan.schema import MAX_COUNT, MAX_KIMG, bounded


class _NoController:
    """Policies with a fixed probability: nothing to observe or adjust."""
    adaptive = False

    def observe(self, logits_real: torch.Tensor) -> None:
        pass

    def adjust(self, step: int, nimg: int, all_mean) -> dict[str, float]:
        return {}

    def aug_state(self) -> dict:
        return {}

    def load_aug_state(self, state: dict, device) -> None:
        pass


@AUGMENTS.register("none")
class NoPolicy(_NoController, NoAugment):
    """D sees the images unchanged."""

    @dataclass(kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg

    def forward(self, images: torch.Tensor, rand) -> torch.Tensor:
        return images  # no draws either: a run without augmentation is the run it was before


@AUGMENTS.register("diffaugment")
class DiffAugmentPolicy(_NoController, DiffAugment):
    """DiffAugment on every image D sees (always on)."""

    @dataclass(kw_only=True)
    class Config(DiffAugment.Config):
        pass


@AUGMENTS.register("ada")
class AdaPolicy(AdaAugment):
    """ADA's pipeline with its adaptive (or a fixed) probability p."""

    @dataclass(kw_only=True)
    class Config(AdaAugment.Config):
        p: Optional[float] = bounded(None, ge=0, le=1)           # fixed probability; None = adaptive (ADA)
        target: float = bounded(0.6, ge=0, le=1)                 # the r_t = E[sign(D(real))] the controller aims at
        speed_kimg: float = bounded(500.0, gt=0, le=MAX_KIMG)    # thousands of images over which p can go from 0 to 1
        interval: int = bounded(4, ge=1, le=MAX_COUNT)           # adjust p every this many steps
        p_init: float = bounded(0.0, ge=0, le=1)                 # adaptive: p at the start of training

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.adaptive = cfg.p is None
        self.p.fill_(cfg.p_init if self.adaptive else cfg.p)
        # sum of sign(D(real)) and how many, on this rank since the last adjustment (float64: exact counts)
        self.register_buffer("signs", torch.zeros(2, dtype=torch.float64), persistent=False)
        self.last_nimg = 0

    def observe(self, logits_real: torch.Tensor) -> None:
        """Dmain's logits on the reals (before any loss); no host sync."""
        if self.adaptive:
            s = logits_real.detach().to(self.signs.device)
            self.signs += torch.stack([s.sign().sum().double(), torch.tensor(float(s.numel()), dtype=torch.float64,
                                                                               device=s.device)])

    def adjust(self, step: int, nimg: int, all_mean) -> dict[str, float]:
        """After training step `step` (0-based), `nimg` images shown in all: every `interval` steps,
        move p by the sign of r_t - target. Every rank calls it (all_mean is a collective) and every
        rank computes the same p. Returns the statistics to log."""
        if not self.adaptive or (step + 1) % self.cfg.interval:
            return {}
        total = all_mean(self.signs.clone()).cpu()  # the mean over ranks of (sum, count): their ratio is the global r_t
        self.signs.zero_()
        if total[1] <= 0:  # no Dmain ran since the last adjustment
            self.last_nimg = nimg
            return {}
        rt = (total[0] / total[1]).item()
        step_p = (nimg - self.last_nimg) / (self.cfg.speed_kimg * 1000)
        sign = (rt > self.cfg.target) - (rt < self.cfg.target)
        self.p.fill_(min(max(float(self.p) + sign * step_p, 0.0), 1.0))
        self.last_nimg = nimg
        return {"Augment/rt": rt}

    def aug_state(self) -> dict:
        return {"p": self.p.detach().cpu().clone(), "signs": self.signs.detach().cpu().clone(),
                "last_nimg": torch.tensor(self.last_nimg, dtype=torch.int64)}

    def load_aug_state(self, state: dict, device) -> None:
        if "p" in state:
            if self.adaptive:
                self.p.copy_(state["p"].to(self.p.device))
            self.signs.copy_(state["signs"].to(self.signs.device))
            self.last_nimg = int(state["last_nimg"])


def build_augment(spec, device) -> nn.Module:
    """The `augment:` section's policy, on the device."""
    return AUGMENTS.get(spec.name)(spec.cfg).to(device)
