"""Wasserstein GAN with gradient penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein
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


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, u: torch.Tensor, c=None,
                     target: float = 1.0) -> torch.Tensor:
    """[N]: (||grad D(x_hat)||_2 - target)^2 / target^2 at x_hat = lerp(real, fake, u); u [N, 1, 1, 1]."""
    x_hat = torch.lerp(real.detach(), fake.detach(), u.to(real.dtype)).requires_grad_(True)
    with no_weight_grad():  # only the input gradient is wanted here
        grad, = torch.autograd.grad(D(x_hat, c).sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(dim=1)
    return (norm - target).square() / target ** 2


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
            losses = {"wdist": logits_fake.mean() - logits_real.mean(), "gp": gp * self.cfg.gp_lambda}
            if self.cfg.drift:
                losses["drift"] = logits_real.square().mean() * self.cfg.drift
            return losses, {"D_real": logits_real.mean(), "D_fake": logits_fake.mean()}
        if phase == "Gmain":
            logits = D(fake, dc)
            return {"adv": -logits.mean()}, {"D_fake_for_G": logits.mean()}
        raise ValueError(f"objective 'wgan_gp' has no phase {phase!r} (it knows Dmain, Gmain)")
