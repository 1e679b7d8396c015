"""StyleGAN's mapping network (Karras et al. 2019, "A Style-Based Generator Architecture for
Generative Adversarial Networks", arXiv:1812.04948, section 2): z -> w through an MLP of
equalized-LR layers with a 100x lower learning rate (lr_mul 0.01, appendix C), broadcast to
the synthesis layers as ws [N, num_ws, w_dim].

It tracks the average w (moving average, decay w_avg_beta) for the truncation trick (section 5.2,
appendix B): w' = w_avg + psi * (w - w_avg), applied to the layers before `cutoff` only. As in
StyleGAN2-ADA, every call in training mode updates it (Gmain, Greg and the fakes of Dmain alike)
except the second latent of style mixing, which passes update_w_avg=False; eval mode never does.
Conditional models embed the one-hot class (a linear layer, lr 1), normalize it and concatenate it
to the normalized z (StyleGAN2-ADA's scheme). With z_dim = 0 the network maps the class alone:
that is the conditional discriminator's label mapping (num_ws = None: one vector, no w_avg).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.equalized import EqualLinear
from hifigan.nn.norms import pixel_norm


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8, lr_mul: float = 0.01,
                 num_classes: int = 0, w_avg_beta: float | None = 0.995, activation: str = "lrelu"):
        super().__init__()
        if z_dim == 0 and num_classes == 0:
            raise ValueError("a mapping network needs a latent (z_dim > 0) or a label (num_classes > 0)")
        self.z_dim, self.w_dim, self.num_ws, self.num_classes = z_dim, w_dim, num_ws, num_classes
        self.w_avg_beta = w_avg_beta
        self.embed = EqualLinear(num_classes, w_dim) if num_classes else None
        dims = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * num_layers
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=lr_mul, activation=activation)
                                    for a, b in zip(dims[:-1], dims[1:]))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))
        else:
            self.w_avg = None

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None = None, psi: float = 1.0,
                cutoff: int | None = None, update_w_avg: bool | None = None) -> torch.Tensor:
        """z [N, z_dim] (+ c [N] class indices) -> ws [N, num_ws, w_dim] ([N, w_dim] when num_ws is None).
        update_w_avg: None = in training mode (StyleGAN2-ADA's rule); False for style mixing's second z."""
        parts = [] if self.z_dim == 0 else [pixel_norm(z)]
        if self.embed is not None:
            if c is None:
                raise ValueError("this network is conditional: pass class labels c")
            dtype = torch.float32 if z is None else z.dtype
            parts.append(pixel_norm(self.embed(F.one_hot(c.long(), self.num_classes).to(dtype))))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        for layer in self.layers:
            x = layer(x)
        if self.w_avg is not None and (self.training if update_w_avg is None else update_w_avg):
            with torch.no_grad():
                self.w_avg.copy_(x.detach().to(self.w_avg.dtype).mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        ws = x[:, None].repeat(1, self.num_ws, 1)
        return truncate(ws, self.w_avg, psi, cutoff)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
    """ws [N, L, w_dim] -> layers [0, cutoff) pulled towards w_avg by psi (psi = 0 gives w_avg)."""
    if psi == 1:
        return ws
    cutoff = ws.shape[1] if cutoff is None else cutoff
    head = w_avg.to(ws.dtype).lerp(ws[:, :cutoff], psi)
    return torch.cat([head, ws[:, cutoff:]], dim=1)


def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, crossover: torch.Tensor) -> torch.Tensor:
    """Style mixing: per sample i, layers < crossover[i] from ws, the rest from ws2 (crossover [N])."""
    layer = torch.arange(ws.shape[1], device=ws.device)
    return torch.where((layer[None, :] < crossover[:, None])[:, :, None], ws, ws2)


def mix_latent(mapping: MappingNetwork, ws: torch.Tensor, mix_z: torch.Tensor, c, psi: float, cutoff, crossover):
    """Style mixing of ws with mix_z's styles from `crossover` on: an int (one layer for the whole batch;
    num_ws = no mixing, and mix_z's mapping is skipped) or [N] int64 (per sample). The mixing latent
    never updates w_avg."""
    if torch.is_tensor(crossover) and crossover.ndim:
        return mix_styles(ws, mapping(mix_z, c, psi, cutoff, update_w_avg=False), crossover.to(ws.device))
    cross = int(crossover)
    if cross >= ws.shape[1]:
        return ws
    return torch.cat([ws[:, :cross], mapping(mix_z, c, psi, cutoff, update_w_avg=False)[:, cross:]], dim=1)
