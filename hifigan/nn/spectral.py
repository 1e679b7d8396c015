"""Spectral normalization (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial
Networks", arXiv:1802.05957).

A layer's weight W (a conv kernel reshaped to the matrix [out, in * kh * kw]) is replaced in the
forward pass by W / sigma(W), sigma the largest singular value, which bounds the layer's Lipschitz
constant by 1. sigma is estimated by power iteration on vectors kept between calls:

    v <- W^T u / ||W^T u||,   u <- W v / ||W v||,   sigma ~= u^T W v

One iteration per training forward is enough because W changes little between steps (the paper's
Algorithm 1). u and v are buffers: a checkpoint restores them, and an eval forward reuses them
unchanged. Gradients flow through sigma with u and v held constant (as in the paper).

An nn.Embedding is normalized as the matrix [num_embeddings, dim] (the projection discriminator's
class embedding, Miyato & Koyama 2018, arXiv:1802.05637, as BigGAN spectrally normalizes it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SpectralNorm(nn.Module):
    """Wraps an nn.Linear, nn.Conv2d or nn.Embedding; its parameters stay on `self.module` (weight, bias)."""

    def __init__(self, module: nn.Module, n_power_iterations: int = 1, init_iterations: int = 15,
                 eps: float = 1e-12):
        super().__init__()
        if type(module) not in (nn.Linear, nn.Conv2d, nn.Embedding):
            raise TypeError(f"spectral norm wraps nn.Linear or nn.Conv2d (or nn.Embedding), got {type(module).__name__}")
        if isinstance(module, nn.Embedding) and (module.max_norm is not None or module.sparse):
            raise TypeError("spectral norm wraps nn.Embedding without max_norm and sparse gradients only")
        if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
            raise TypeError(f"spectral norm supports zero-padded convs only, got padding_mode={module.padding_mode!r}")
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.module, self.n_power_iterations, self.eps = module, n_power_iterations, eps
        w = module.weight.detach().flatten(1)  # [out, in * kh * kw]
        u, v = (torch.randn(n, dtype=w.dtype, device=w.device) for n in w.shape)
        if not w.is_meta:  # on the meta device (sizes only) normalizing costs time and means nothing
            u, v = F.normalize(u, dim=0, eps=eps), F.normalize(v, dim=0, eps=eps)
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        self._power_iteration(w, init_iterations)  # start from a converged estimate, not a random one

    def reestimate_(self, n: int = 15) -> None:
        """Run `n` power iterations now: after the weight was re-initialized in place (BigGAN's
        orthogonal init), the kept u, v no longer approximate its singular vectors."""
        self._power_iteration(self.module.weight.detach().flatten(1), n)

    @torch.no_grad()
    def _power_iteration(self, w_mat: torch.Tensor, n: int) -> None:
        if w_mat.is_meta:  # a network built on the meta device (sizes only): there is nothing to estimate
            return
        for _ in range(n):
            self.v.copy_(F.normalize(torch.mv(w_mat.t(), self.u), dim=0, eps=self.eps))
            self.u.copy_(F.normalize(torch.mv(w_mat, self.v), dim=0, eps=self.eps))

    def sigma(self) -> torch.Tensor:
        """The current estimate u^T W v (differentiable in W), without advancing the iteration."""
        w_mat = self.module.weight.flatten(1)
        # clones: a later training forward updates u, v in place while this graph may still need them
        return torch.dot(self.u.clone(), torch.mv(w_mat, self.v.clone()))

    def weight(self) -> torch.Tensor:
        """W / sigma(W); advances the power iteration once per call in training mode."""
        w = self.module.weight
        with torch.autocast(w.device.type, enabled=False):  # the estimate in the weight's own precision
            if self.training:
                self._power_iteration(w.detach().flatten(1), self.n_power_iterations)
            return w / self.sigma()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, w = self.module, self.weight()
        if isinstance(m, nn.Linear):
            return F.linear(x, w, m.bias)
        if isinstance(m, nn.Embedding):
            return F.embedding(x, w, m.padding_idx)
        return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)

    def extra_repr(self) -> str:
        return f"n_power_iterations={self.n_power_iterations}"


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap every nn.Linear / nn.Conv2d inside `module` (or `module` itself) in SpectralNorm, in place.

    Call it after weight initialisation: the power iteration starts from the initialised weights."""
    if type(module) in (nn.Linear, nn.Conv2d):
        return SpectralNorm(module)
    for name, child in list(module.named_children()):
        if isinstance(child, SpectralNorm):
            continue
        setattr(module, name, apply_spectral_norm(child))
    return module
