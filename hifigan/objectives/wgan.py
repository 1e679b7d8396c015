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
from hifigan.kernels.conv2d import no_weight_grad
from hifigan.objectives.base import Batch, Objective
from hifigan.objectives.gan import fake_inputs
from hifigan.registry import OBJECTIVES


def critic_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The critic's loss E[D(G(z))] - E[D(x)] (minus the Wasserstein-1 estimate)."""
    return logits_fake.mean() - logits_real.mean()


def g_wasserstein(logits_fake: torch.Tensor) -> torch.Tensor:
    """G's loss -E[D(G(z))]."""
    return -logits_fake.mean()


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, u: torch.Tensor, c=None,
                     target: float = 1.0) -> torch.Tensor:
    """[N]: (||grad D(x_hat)||_2 - target)^2 / target^2 at x_hat = lerp(real, fake, u); u [N, 1, 1, 1]."""
    x_hat = torch.lerp(real.detach(), fake.detach(), u.to(real.dtype)).requires_grad_(True)
    with no_weight_grad():  # only the input gradient is wanted here
        grad, = torch.autograd.grad(D(x_hat, c).sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(dim=1)
    return (norm - target).square() / target ** 2


@OBJECTIVES.register("wgan")
class WGANObjective(Objective):
    """Dmain: critic loss E[D(G(z))] - E[D(x)] (clip D's weights with optim.D.weight_clip); Gmain: -D(G(z))."""

    @dataclass(kw_only=True)
    class Config:
        n_critic: int = 5           # Dmain repeats per G step in the default schedule (a `phases:` list overrides it)

        def __post_init__(self):
            if self.n_critic < 1:
                raise ValueError(f"n_critic: must be at least 1, got {self.n_critic}")

    @property
    def default_phases(self) -> list[PhaseConfig]:
        return [PhaseConfig(name="Dmain", nets=["D"], repeats=self.cfg.n_critic), PhaseConfig(name="Gmain", nets=["G"])]

    def __call__(self, phase: str, nets: dict, batch: Batch):
        G, D = nets["G"], nets["D"]
        z, c = fake_inputs(G, batch)
        fake = G(z, c)  # [n, C, H, W]
        dc = c if D.num_classes else None
        if phase == "Dmain":
            logits_real = D(batch.img, batch.c if D.num_classes else None)
            logits_fake = D(fake.detach(), dc)
            stats = {"D_real": logits_real.mean(), "D_fake": logits_fake.mean(),
                     "wasserstein": (logits_real.mean() - logits_fake.mean()).detach()}
            return {"wdist": critic_loss(logits_real, logits_fake)}, stats
        if phase == "Gmain":
            logits = D(fake, dc)
            return {"adv": g_wasserstein(logits)}, {"D_fake_for_G": logits.mean()}
        raise ValueError(f"objective 'wgan' has no phase {phase!r} (it knows Dmain, Gmain)")


@OBJECTIVES.register("wgan_gp")
class WGANGPObjective(Objective):
    """Dmain: critic loss with gradient penalty and drift; Gmain: -D(G(z))."""

    @dataclass(kw_only=True)
    class Config:
        gp_lambda: float = 10.0     # gradient-penalty weight lambda
        gp_target: float = 1.0      # the gradient norm the penalty pulls towards (ProGAN: 1)
        drift: float = 0.001        # epsilon of the drift term epsilon * D(x)^2 (ProGAN); 0 = off

    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]

    def __call__(self, phase: str, nets: dict, batch: Batch):
        G, D = nets["G"], nets["D"]
        z, c = fake_inputs(G, batch)
        fake = G(z, c)  # [n, C, H, W]
        dc = c if D.num_classes else None
        if phase == "Dmain":
            u = batch.rand.rand(1, 1, 1)
            real_c = batch.c if D.num_classes else None
            logits_real, logits_fake = D(batch.img, real_c), D(fake.detach(), dc)
            gp = gradient_penalty(D, batch.img, fake, u, dc, self.cfg.gp_target).mean()
            losses = {"wdist": critic_loss(logits_real, logits_fake), "gp": gp * self.cfg.gp_lambda}
            if self.cfg.drift:
                losses["drift"] = logits_real.square().mean() * self.cfg.drift
            return losses, {"D_real": logits_real.mean(), "D_fake": logits_fake.mean()}
        if phase == "Gmain":
            logits = D(fake, dc)
            return {"adv": g_wasserstein(logits)}, {"D_fake_for_G": logits.mean()}
        raise ValueError(f"objective 'wgan_gp' has no phase {phase!r} (it knows Dmain, Gmain)")
