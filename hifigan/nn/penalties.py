"""Input-gradient penalties: the gradients of a network's output with respect to its input (or latent),
kept in the graph (create_graph) so a regularizer can be differentiated through them.

- R1 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", arXiv:1801.04406):
  ||grad_x D(x)||^2 on reals.
- Gradient penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", arXiv:1704.00028):
  (||grad D(x_hat)||_2 - target)^2 / target^2 at random interpolates of real and fake.
- Path length (Karras et al. 2020, StyleGAN2, arXiv:1912.04958, section 3.2): ||J_w^T y||.

Only the input gradient is wanted, so each runs under the kernels' `no_weight_grad()`: the fused
convolutions then skip weight gradients nobody asked for (torch's own convolution knows that; a
custom autograd Function does not). Objectives call these; they never import the kernels themselves.
"""
from __future__ import annotations

import torch

from hifigan.kernels.conv2d import no_weight_grad


def input_grad(output: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """d(output.sum())/d(inputs), differentiable (create_graph), without weight gradients."""
    with no_weight_grad():
        grad, = torch.autograd.grad(output.sum(), inputs, create_graph=True)
    return grad


def r1_penalty(D, img: torch.Tensor, c=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample ||grad_x D(x)||^2 [N], logits [N]); differentiable (create_graph) for the D step."""
    img = img.detach().requires_grad_(True)
    logits = D(img, c)
    grad = input_grad(logits, img)
    return grad.square().sum(dim=[1, 2, 3]), logits


def path_lengths(img: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """[N]: sqrt(mean over layers of ||d(img . noise)/d w_l||^2); differentiable."""
    grad = input_grad(img * noise, ws)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, u: torch.Tensor, c=None,
                     target: float = 1.0) -> torch.Tensor:
    """[N]: (||grad D(x_hat)||_2 - target)^2 / target^2 at x_hat = lerp(real, fake, u); u [N, 1, 1, 1]."""
    x_hat = torch.lerp(real.detach(), fake.detach(), u.to(real.dtype)).requires_grad_(True)
    norm = input_grad(D(x_hat, c), x_hat).flatten(1).norm(dim=1)
    return (norm - target).square() / target ** 2
