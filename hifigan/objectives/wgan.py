"""Wasserstein GAN with weight clipping ("wgan"; Arjovsky et al. 2017, "Wasserstein GAN",
arXiv:1701.07875): the critic minimises E[D(G(z))] - E[D(x)], G minimises -E[D(G(z))]; no
sigmoid, no log. The Lipschitz constraint is weight clipping, a trainer option
(`optim.D.weight_clip: 0.01`); the paper's RMSProp lr 5e-5 is `optim`, and n_critic = 5 is the
Dmain phase's `repeats` (the default schedule takes it from `n_critic`).

Wasserstein GAN with gradient penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein
GANs", arXiv:1704.00028), with ProGAN's drift term (Karras et al. 2018, arXiv:1710.10196,
appendix A.1).

Critic: E[D(G(z))] - E[D(x)] + lambda * E[(||grad D(x_hat)||_2 - target)^2 / target^2]
+ epsilon * E[D(x)^2], x_hat = x + u (G(z) - x), u ~ U(0, 1) per sample. The drift term keeps the
critic's output near zero (ProGAN: epsilon = 0.001, lambda = 10, target = 1). G: -E[D(G(z))].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hifigan.config import PhaseConfig
from hifigan.nn.penalties import gradient_penalty  # noqa: F401  (re-exported for the tests)
from hifigan.objectives.base import Batch, Objective, d_labels, dmain, fakes, gmain, real_fake_logits
from hifigan.schema import MAX_COUNT, bounded
from hifigan.registry import OBJECTIVES


def critic_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The critic's loss E[D(G(z))] - E[D(x)] (minus the Wasserstein-1 estimate)."""
    return logits_fake.mean() - logits_real.mean()


def g_wasserstein(logits_fake: torch.Tensor) -> torch.Tensor:
    """G's loss -E[D(G(z))]."""
    return -logits_fake.mean()


@OBJECTIVES.register("wgan")
class WGANObjective(Objective):
    """Dmain: critic loss E[D(G(z))] - E[D(x)] (clip D's weights with optim.D.weight_clip); Gmain: -D(G(z))."""

    @dataclass(kw_only=True)
    class Config:
        n_critic: int = bounded(5, ge=1, le=MAX_COUNT)  # Dmain repeats per G step in the default schedule (a `phases:` list overrides it)

        def __post_init__(self):
            if self.n_critic < 1:
                raise ValueError(f"n_critic: must be at least 1, got {self.n_critic}")

    phases = {"Dmain": dmain(), "Gmain": gmain()}

    @property
    def default_phases(self) -> list[PhaseConfig]:
        return [PhaseConfig(name="Dmain", nets=["D"], repeats=self.cfg.n_critic), PhaseConfig(name="Gmain", nets=["G"])]

    def d_main(self, nets: dict, batch: Batch):
        fake, c = fakes(nets["G"], batch)  # [n, C, H, W]
        logits_real, logits_fake = real_fake_logits(nets["D"], batch, fake, c)
        stats = {"D_real": logits_real.mean(), "D_fake": logits_fake.mean(),
                 "wasserstein": (logits_real.mean() - logits_fake.mean()).detach()}
        return {"wdist": critic_loss(logits_real, logits_fake)}, stats

    def g_main(self, nets: dict, batch: Batch):
        fake, c = fakes(nets["G"], batch)
        logits = nets["D"](fake, d_labels(nets["D"], c))
        return {"adv": g_wasserstein(logits)}, {"D_fake_for_G": logits.mean()}


@OBJECTIVES.register("wgan_gp")
class WGANGPObjective(Objective):
    """Dmain: critic loss with gradient penalty and drift; Gmain: -D(G(z))."""

    @dataclass(kw_only=True)
    class Config:
        gp_lambda: float = bounded(10.0, ge=0)  # gradient-penalty weight lambda
        gp_target: float = bounded(1.0, ge=0)   # the gradient norm the penalty pulls towards (ProGAN: 1)
        drift: float = bounded(0.001, ge=0)     # epsilon of the drift term epsilon * D(x)^2 (ProGAN); 0 = off

    phases = {"Dmain": dmain(second_order=True), "Gmain": gmain()}
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]

    def d_main(self, nets: dict, batch: Batch):
        D = nets["D"]
        fake, c = fakes(nets["G"], batch)  # [n, C, H, W]
        u = batch.rand.rand(1, 1, 1)
        logits_real, logits_fake = real_fake_logits(D, batch, fake, c)
        gp = gradient_penalty(D, batch.img, fake, u, d_labels(D, c), self.cfg.gp_target).mean()
        losses = {"wdist": critic_loss(logits_real, logits_fake), "gp": gp * self.cfg.gp_lambda}
        if self.cfg.drift:
            losses["drift"] = logits_real.square().mean() * self.cfg.drift
        return losses, {"D_real": logits_real.mean(), "D_fake": logits_fake.mean()}

    g_main = WGANObjective.g_main
