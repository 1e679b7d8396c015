"""LAPGAN's objective (Denton et al. 2015, "Deep Generative Image Models using a Laplacian Pyramid of
Adversarial Networks", arXiv:1506.05751, section 3.2): one GAN per pyramid level, trained
independently. Each real image is decomposed (hifigan/nn/pyramid.py); level 0's G and D play the
usual game on the coarsest images, and each finer level k's G makes a band-pass image h_k from
noise and l_k, the REAL image's coarser level upsampled, while its D tells (h_k, l_k) of the real
image from (G_k(z_k, l_k), l_k). Losses are the paper's binary cross-entropy (eq. 2) with G's
non-saturating form by default, summed over the levels a step trains.

Schedules: `joint` trains every level of `levels_trained` each step (the levels share nothing, so
this is the paper's independent training run side by side, on one stream of real images);
`sequential` trains one level at a time, coarsest first: the i-th level of `levels_trained` during
[i * level_kimg, (i + 1) * level_kimg) thousand real images (read from Batch.nimg, so a resumed run
continues in the same level), and the last one from then on. A level that does not train is not run:
its parameters get no gradient (None, so Adam leaves them and their moments untouched) and its batch
norm statistics do not move.

Losses and scores are named per level: Loss/Dmain/real_L1, Scores/D_fake_L2, ...
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field

import torch

from hifigan.config import PhaseConfig
from hifigan.errors import UserError
from hifigan.nn.pyramid import coarse_to_fine
from hifigan.objectives.base import Batch, Objective, PhaseSpec, d_labels, dmain
from hifigan.objectives.gan import d_logistic, g_minimax, g_nonsaturating
from hifigan.registry import OBJECTIVES
from hifigan.schema import MAX_KIMG, MAX_LAYERS, bounded

LOSSES = ("nonsaturating", "minimax")
SCHEDULES = ("joint", "sequential")


@OBJECTIVES.register("lapgan")
class LAPGANObjective(Objective):
    """Dmain: per trained level, BCE on D(real) and D(G(z)); Gmain: G's loss on D(G(z)), with the same
    real images (reused) giving the finer levels' conditioning images."""

    @dataclass(kw_only=True)
    class Config:
        loss: str = field(default="nonsaturating", metadata={"choices": LOSSES})  # G: -log D(G(z)) (nonsaturating, the paper's practice) or log(1 - D(G(z)))
        schedule: str = field(default="joint", metadata={"choices": SCHEDULES})   # joint: all levels every step; sequential: one at a time, coarsest first
        level_kimg: float = bounded(100.0, gt=0, le=MAX_KIMG)                      # sequential: thousands of real images each level trains for
        levels_trained: typing.Optional[list[int]] = bounded(None, ge=0, lt=MAX_LAYERS)  # levels that train (0 = coarsest), in schedule order; null = all

        def __post_init__(self):
            if self.loss not in LOSSES:
                raise ValueError(f"loss: {self.loss!r} is not allowed (choose from {', '.join(LOSSES)})")
            if self.schedule not in SCHEDULES:
                raise ValueError(f"schedule: {self.schedule!r} is not allowed (choose from {', '.join(SCHEDULES)})")
            if self.levels_trained is not None:
                if not self.levels_trained or len(set(self.levels_trained)) != len(self.levels_trained):
                    raise ValueError(f"levels_trained {self.levels_trained}: list each level once, at least one "
                                     f"(or null for all)")

    phases = {"Dmain": dmain(),
              # G's finer levels are conditioned on real images too: the ones Dmain drew
              "Gmain": PhaseSpec("g_main", requires=("G", "D"), trains=("G",), reals="reuse")}
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]

    def check_nets(self, nets: dict) -> None:
        G, D = nets["G"], nets["D"]
        for name, net in (("G", G), ("D", D)):
            if getattr(net, "registry_name", None) != "lapgan":
                raise UserError(f"{name}: objective 'lapgan' trains a pyramid of per-level networks; set "
                                f"{name}.arch=lapgan (this one is {getattr(net, 'registry_name', type(net).__name__)!r})")
        g, d = G.cfg, D.cfg
        for key in ("levels", "resolution", "channels"):
            if getattr(g, key) != getattr(d, key):
                raise UserError(f"D.{key}: {getattr(d, key)} but G.{key} is {getattr(g, key)}; the pyramids must match")
        if D.num_classes and D.num_classes != G.num_classes:
            raise UserError(f"D.num_classes: {D.num_classes} but G.num_classes is {G.num_classes}; set them equal "
                            f"(or D.num_classes=0 for an unconditional D)")
        bad = [k for k in self.cfg.levels_trained or () if k >= G.num_levels]
        if bad:
            raise UserError(f"objective.levels_trained: level {bad[0]} does not exist; G has {G.num_levels} levels "
                            f"(0 = coarsest .. {G.num_levels - 1})")

    def trained_levels(self, num_levels: int, nimg: int) -> tuple[int, ...]:
        """The levels a step at `nimg` real images trains (see the module docstring)."""
        order = list(range(num_levels)) if self.cfg.levels_trained is None else list(self.cfg.levels_trained)
        if self.cfg.schedule == "joint":
            return tuple(sorted(order))
        window = max(1, int(round(self.cfg.level_kimg * 1000)))
        return (order[min(nimg // window, len(order) - 1)],)

    def _levels(self, G, batch: Batch):
        """(levels trained, {k: real target}, {k: conditioning image or None}, z, c) for this step."""
        levels = self.trained_levels(G.num_levels, batch.nimg)
        pairs = coarse_to_fine(batch.img, G.num_levels)
        z = batch.rand.randn(G.z_dim)  # every level's noise, whichever train: the same draws either way
        c = batch.c if G.num_classes else None  # the real image's class: its coarse image conditions the finer levels
        return levels, {k: pairs[k][0] for k in levels}, {k: pairs[k][1] for k in levels}, z, c

    def g_term(self, logits_fake: torch.Tensor) -> torch.Tensor:
        return g_nonsaturating(logits_fake) if self.cfg.loss == "nonsaturating" else g_minimax(logits_fake)

    def d_main(self, nets: dict, batch: Batch):
        G, D = nets["G"], nets["D"]
        levels, real, coarse, z, c = self._levels(G, batch)
        fake = G(z, c, coarse=coarse)  # {k: [n, C, r_k, r_k]}
        dc = d_labels(D, c)
        logits_real = D({k: (real[k], coarse[k]) for k in levels}, dc)
        logits_fake = D({k: (fake[k].detach(), coarse[k]) for k in levels}, dc)
        losses, stats = {}, {}
        for k in levels:
            losses[f"real_L{k}"], losses[f"fake_L{k}"] = d_logistic(logits_real[k], logits_fake[k])
            stats[f"D_real_L{k}"] = torch.sigmoid(logits_real[k]).mean()
            stats[f"D_fake_L{k}"] = torch.sigmoid(logits_fake[k]).mean()
        return losses, stats

    def g_main(self, nets: dict, batch: Batch):
        G, D = nets["G"], nets["D"]
        levels, _, coarse, z, c = self._levels(G, batch)
        fake = G(z, c, coarse=coarse)
        logits = D({k: (fake[k], coarse[k]) for k in levels}, d_labels(D, c))
        losses = {f"adv_L{k}": self.g_term(logits[k]) for k in levels}
        return losses, {f"D_fake_for_G_L{k}": torch.sigmoid(logits[k]).mean() for k in levels}
