"""The StyleGAN family's objective: non-saturating logistic loss with R1 and path-length
regularization, and style-mixing regularization.

- Loss: D minimises softplus(D(G(z))) + softplus(-D(x)); G minimises softplus(-D(G(z)))
  (Goodfellow et al. 2014, arXiv:1406.2661, the non-saturating form).
- R1 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?",
  arXiv:1801.04406): gamma/2 * E ||grad_x D(x)||^2 on reals. StyleGAN v1 applies it every step;
  StyleGAN2 lazily every 16 minibatches (phase Dreg, every: 16; the trainer scales the loss by 16
  and corrects Adam, see train/phases.py). Dreg sees the same reals as the Dmain before it.
- Path-length regularization (Karras et al. 2020, StyleGAN2, arXiv:1912.04958, section 3.2):
  with y ~ N(0, I) / sqrt(H W), the Jacobian-vector length ||J_w^T y||_2 (averaged over the ws
  layers' squared norms) is pulled towards its running mean a (decay 0.01) by
  pl_weight * (||J_w^T y|| - a)^2, on a batch shrunk by pl_batch_shrink (phase Greg, every: 4).
  As StyleGAN2-ADA defines it, the updated mean a' = lerp(a, mean(lengths), decay) stays in the
  graph (only the stored copy is detached), so the penalty's gradient includes the lengths' pull
  on a' (see `pl_penalty`). The batch mean is over every rank's lengths, through a differentiable
  all-reduce (Batch.cross_rank_mean), so two ranks x B give the gradient of one rank x 2B. The
  running mean is checkpointed.
- Style mixing (Karras et al. 2019, arXiv:1812.04948, section 3.1): with probability
  `style_mixing` the ws switch to those of a second z from a crossover layer drawn uniformly from
  [1, num_ws). `mixing_per: batch` (the default, StyleGAN2-ADA's rule) makes that decision once for
  the whole global batch; `sample` makes it per sample. The second latent's mapping never updates
  w_avg, and is skipped when the batch does not mix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hifigan.config import PhaseConfig
from hifigan.nn.penalties import path_lengths, r1_penalty
from hifigan.objectives.base import Batch, Objective, PhaseSpec, d_labels
from hifigan.errors import UserError
from hifigan.schema import MAX_BATCH, MAX_COUNT, bounded
from hifigan.registry import OBJECTIVES


@OBJECTIVES.register("stylegan")
class StyleGANObjective(Objective):
    """Phases: Gmain, Greg (path length), Dmain, Dreg (R1)."""

    @dataclass(kw_only=True)
    class Config:
        r1_gamma: float = bounded(10.0, ge=0)                  # R1 weight gamma (penalty gamma / 2 * ||grad||^2); 0 = off
        pl_weight: float = bounded(0.0, ge=0)                  # path-length weight (StyleGAN2: 2); 0 = off
        pl_decay: float = bounded(0.01, ge=0, le=1)            # decay of the path-length running mean
        pl_batch_shrink: int = bounded(2, ge=1, le=MAX_BATCH)  # the path-length batch is the phase batch / this
        style_mixing: float = bounded(0.9, ge=0, le=1)         # probability of mixing two latents; 0 = off
        mixing_per: str = field(default="batch", metadata={"choices": ("batch", "sample")})  # one mixing decision per global batch (StyleGAN2-ADA) or per sample
        r1_every: int = bounded(16, ge=1, le=MAX_COUNT)        # Dreg interval of the default schedule (1 = not lazy, StyleGAN v1)
        pl_every: int = bounded(4, ge=1, le=MAX_COUNT)         # Greg interval of the default schedule

    phases = {"Gmain": PhaseSpec("g_main", ("G", "D"), ("G",)), "Greg": PhaseSpec("g_reg", ("G",), ("G",), second_order=True),
              "Dmain": PhaseSpec("d_main", ("G", "D"), ("D",), reals="draw"),
              "Dreg": PhaseSpec("d_reg", ("D",), ("D",), reals="reuse", second_order=True)}

    supports_augment = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.pl_mean = None

    def run_d(self, D, img: torch.Tensor, c, batch: Batch) -> torch.Tensor:
        """D's logits on img after the augmentation policy (ADA), if the run has one."""
        if self.augment is not None:
            img = self.augment(img, batch.rand)
        return D(img, c)

    @property
    def default_phases(self) -> list[PhaseConfig]:
        c = self.cfg
        ph = [PhaseConfig(name="Gmain", nets=["G"])]
        if c.pl_weight > 0:
            ph.append(PhaseConfig(name="Greg", nets=["G"], every=c.pl_every))
        ph.append(PhaseConfig(name="Dmain", nets=["D"]))
        if c.r1_gamma > 0:
            ph.append(PhaseConfig(name="Dreg", nets=["D"], every=c.r1_every))
        return ph

    def fake(self, G, batch: Batch, n: int | None = None, **kw):
        """G(z) with style mixing; the first n samples of the phase batch when n is given."""
        z = batch.rand.randn(G.z_dim)
        c = batch.rand.randint(G.num_classes) if G.num_classes else None
        z2 = batch.rand.randn(G.z_dim)
        sl = slice(0, n)
        z, z2 = z[sl], z2[sl]
        c = None if c is None else c[sl]
        if self.cfg.mixing_per == "batch":
            mix, cross = batch.rand.shared_rand(2).tolist()
            crossover = 1 + min(int(cross * (G.num_ws - 1)), G.num_ws - 2) if mix < self.cfg.style_mixing else G.num_ws
        else:
            mix = batch.rand.rand()[sl]
            cross = batch.rand.randint(max(G.num_ws - 1, 1))[sl] + 1
            crossover = torch.where(mix < self.cfg.style_mixing, cross, torch.full_like(cross, G.num_ws))
        return G(z, c, mix_z=z2, crossover=crossover, **kw), c

    def check_nets(self, nets: dict) -> None:
        G = nets["G"]
        if not hasattr(G, "num_ws"):
            raise UserError(f"objective 'stylegan' needs a style-based G (stylegan1, stylegan2), not {G.registry_name!r}")

    def g_main(self, nets: dict, batch: Batch):
        img, c = self.fake(nets["G"], batch)
        logits = self.run_d(nets["D"], img, c, batch)
        return {"adv": F.softplus(-logits).mean()}, {"D_fake_for_G": logits.mean()}

    def d_main(self, nets: dict, batch: Batch):
        D = nets["D"]
        img, c = self.fake(nets["G"], batch)
        logits_fake = self.run_d(D, img.detach(), c, batch)
        logits_real = self.run_d(D, batch.img, d_labels(D, batch.c), batch)
        if self.augment is not None:
            self.augment.observe(logits_real)  # ADA's r_t = E[sign(D(real))]
        losses = {"fake": F.softplus(logits_fake).mean(), "real": F.softplus(-logits_real).mean()}
        return losses, {"D_real": logits_real.mean(), "D_fake": logits_fake.mean()}

    def d_reg(self, nets: dict, batch: Batch):
        D = nets["D"]
        # R1 is the gradient with respect to the real image before augmentation
        pen, logits = r1_penalty(lambda x, c: self.run_d(D, x, c, batch), batch.img, d_labels(D, batch.c))
        # `logits * 0` keeps D's output in the graph so every parameter takes part in backward
        return {"r1": pen.mean() * (self.cfg.r1_gamma / 2) + logits.mean() * 0}, {"r1_penalty": pen.mean()}

    def g_reg(self, nets: dict, batch: Batch):
        return self.path_length(nets["G"], batch)

    def path_length(self, G, batch: Batch):
        n = max(batch.rand.size // self.cfg.pl_batch_shrink, 1)
        ws = torch.zeros([n, G.num_ws, G.w_dim], device=batch.rand.device,
                         requires_grad=True)  # d/d(ws) taken here
        img, _ = self.fake(G, batch, n, ws_offset=ws)
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        lengths = path_lengths(img, ws, noise)
        if self.pl_mean is None:
            self.pl_mean = torch.zeros((), device=lengths.device)
        penalty, mean = pl_penalty(lengths, self.pl_mean, self.cfg.pl_decay, batch.cross_rank_mean)
        self.pl_mean.copy_(mean.detach())
        return {"pl": penalty * self.cfg.pl_weight + img[:, 0, 0, 0].sum() * 0}, \
            {"pl_length": lengths.detach().mean(), "pl_mean": mean.detach()}

    def state_dict(self) -> dict:
        state = {} if self.pl_mean is None else {"pl_mean": self.pl_mean.detach().cpu()}
        if self.augment is not None:
            state.update({f"augment.{k}": v for k, v in self.augment.aug_state().items()})
        return state

    def load_state_dict(self, state: dict, device) -> None:
        if "pl_mean" in state:
            self.pl_mean = state["pl_mean"].to(device)
        if self.augment is not None:
            self.augment.load_aug_state({k[8:]: v for k, v in state.items() if k.startswith("augment.")}, device)


def pl_penalty(lengths: torch.Tensor, pl_mean: torch.Tensor, decay: float, cross_rank_mean=lambda x: x):
    """(mean_i (l_i - a')^2, a') with a' = lerp(a, mean over the global batch of l, decay), a' in the graph.
    d penalty / d l_i = 2/n (l_i - a') - 2 decay / (n R) * sum over every rank's l_j of (l_j - a') / n_j
    (on one rank: 2/n (l_i - a') - 2 decay/n mean_j (l_j - a')): the second term is what a detached
    mean drops (StyleGAN2-ADA keeps it; with decay 0.01 it is about 1% of the gradient)."""
    mean = pl_mean.lerp(cross_rank_mean(lengths.mean()), decay)
    return (lengths - mean).square().mean(), mean
