"""Projection: find the latent (and optionally the noise maps) whose image G reproduces a target.

Image2StyleGAN (Abdal et al. 2019, "Image2StyleGAN: How to Embed Images Into the StyleGAN Latent
Space?", arXiv:1904.03189) optimizes one w per synthesis layer (the extended space W+) from the mean
w, with Adam on a perceptual + pixel loss; Image2StyleGAN++ (Abdal et al. 2020, arXiv:1911.11544)
adds masks on the losses and a second phase that optimizes the per-layer noise maps with the latent
fixed. The StyleGAN2 projector (Karras et al. 2020, arXiv:1912.04958, appendix D) optimizes one w
and the noise maps jointly, with learning-rate ramps, a decaying noise on w and a penalty that keeps
the noise maps free of spatial structure. `ProjectConfig` (hifigan.project.config) selects among them.

Spaces: z (through the mapping network), w (one w broadcast to all num_ws layers), w+ (num_ws ws).
The start is w_avg, estimated as the mean w of `w_avg_samples` z (or G's stored running mean);
in z space a seeded N(0, I) draw. Synthesis runs with noise_mode "const": G's own fixed noise maps,
so an image G made for a seed has an exact answer; optimized noise maps stand in for those buffers.
One image per call: the batch is 1 (ws [1, num_ws, w_dim]).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.nn.noise import NoiseInjection
from hifigan.project.config import ProjectConfig, latent_noise_at, lr_at
from hifigan.project.losses import Perceptual, apply_mask, masked_mse, noise_regularization, renormalize_
from hifigan.project.quality import psnr
from hifigan.sampling.grid import to_uint8
from hifigan.sampling.hooks import SamplingHooks, require_style


@dataclass
class Projection:
    """What a projection found (on the CPU): ws [num_ws, w_dim], image uint8 [H, W, C], the noise maps
    it optimized (name -> [H, W]; empty if none), and how it went."""
    ws: torch.Tensor
    image: np.ndarray
    noise: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)   # logged statistics, one dict per logged step
    z: torch.Tensor | None = None                        # the optimized z [z_dim] (space z only)


StepCallback = Callable[[int, dict, torch.Tensor], None]  # (step, stats, img [1, C, H, W]) at logged steps


def style_hooks(G: nn.Module) -> SamplingHooks:
    """G's style-based hooks, or a one-line UserError for a generator without a mapping network."""
    return require_style(G, "projection")


def noise_modules(G: nn.Module) -> list[tuple[str, NoiseInjection]]:
    """G's per-layer noise inputs in synthesis order, as (name, module)."""
    return [(n, m) for n, m in G.named_modules() if isinstance(m, NoiseInjection)]


def noise_key(name: str) -> str:
    """A noise module's name as a projection.npz key: noise_synthesis_blocks_b8_conv0_noise."""
    return "noise_" + name.replace(".", "_")


@contextlib.contextmanager
def explicit_noise(G: nn.Module, maps: dict[str, torch.Tensor]):
    """Synthesis with noise_mode "const" reads these maps (name -> [H, W], may require grad) instead of
    G's fixed buffers; the buffers are put back afterwards."""
    mods = dict(noise_modules(G))
    saved = {}
    try:
        for name, n in maps.items():
            saved[name] = mods[name].noise_const
            mods[name].noise_const = n  # a buffer slot takes any tensor; the graph flows through it
        yield
    finally:
        for name, buf in saved.items():
            mods[name].noise_const = buf


@contextlib.contextmanager
def frozen(G: nn.Module):
    """G in eval mode without parameter gradients for the duration; its modes restored afterwards."""
    was_training = G.training
    flags = [(p, p.requires_grad) for p in G.parameters()]
    G.eval().requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        G.train(was_training)


@torch.no_grad()
def w_stats(G: nn.Module, c: torch.Tensor | None, samples: int = 10000, seed: int = 0,
            source: str = "estimate", batch: int = 1000) -> tuple[torch.Tensor, float]:
    """(w_avg [w_dim], sigma_w): the mean w of `samples` seeded z (or G's stored running mean) and the
    root mean squared distance of those ws from it (StyleGAN2 appendix D scales the latent noise by it)."""
    hooks = style_hooks(G)
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    ws = []
    for i in range(0, samples, batch):
        z = torch.randn(min(batch, samples - i), G.z_dim, generator=gen).to(device)
        cc = None if c is None else c.expand(len(z))
        ws.append(hooks.mapping(G, z, cc, 1.0, None)[:, 0].float())  # [n, w_dim]
    ws = torch.cat(ws)
    w_avg = ws.mean(0)
    if source == "stored":
        stored = getattr(G, "w_avg", None)
        if stored is None:
            raise UserError("--w-avg stored: this generator keeps no running mean of w; use --w-avg estimate")
        w_avg = stored.detach().float().to(device)
    sigma = float(((ws - w_avg) ** 2).sum(1).mean().sqrt())
    return w_avg, sigma


class Latent:
    """The optimized variable of one space and how it becomes ws [1, num_ws, w_dim]."""

    def __init__(self, G: nn.Module, cfg: ProjectConfig, c: torch.Tensor | None, w_avg: torch.Tensor):
        self.G, self.space, self.c = G, cfg.space, c
        self.hooks = style_hooks(G)
        self.num_ws = self.hooks.num_ws(G)
        device = w_avg.device
        if cfg.space == "z":
            z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
            self.param = z.requires_grad_(True)
        elif cfg.space == "w":
            self.param = w_avg[None].clone().requires_grad_(True)  # [1, w_dim]
        else:
            self.param = w_avg[None, None].repeat(1, self.num_ws, 1).requires_grad_(True)  # [1, num_ws, w_dim]

    def ws(self, noise_scale: float = 0.0, gen: torch.Generator | None = None) -> torch.Tensor:
        """ws [1, num_ws, w_dim], plus N(0, noise_scale^2) on each optimized w (one draw for w and z)."""
        p = self.param
        if self.space == "z":
            ws = self.hooks.mapping(self.G, p, self.c, 1.0, None)
        elif self.space == "w":
            ws = p[:, None].expand(1, self.num_ws, p.shape[-1])
        else:
            ws = p
        if noise_scale > 0:
            shape = (1, self.num_ws if self.space == "w+" else 1, ws.shape[-1])
            ws = ws + noise_scale * torch.randn(shape, generator=gen).to(ws.device)
        return ws


def _loss(cfg: ProjectConfig, img, target, mask, perceptual: Perceptual | None, mse_only: bool = False):
    """(total [], stats) for img vs target over the known pixels."""
    stats = {}
    total = img.new_zeros(())
    if cfg.uses_mse or mse_only:
        mse = masked_mse(img, target, mask).mean()
        stats["mse"] = float(mse.detach())
        total = total + (1.0 if mse_only else cfg.mse_weight) * mse
    if cfg.perceptual_kind and not mse_only:
        if perceptual is None:
            raise UserError(f"--loss {cfg.loss}: no perceptual network was given (--vgg / --lpips FILE)")
        p = apply_mask(perceptual, img, target, mask).mean()
        stats["perceptual"] = float(p.detach())
        total = total + cfg.perceptual_weight * p
    return total, stats


def _check_inputs(G: nn.Module, target: torch.Tensor, mask: torch.Tensor | None, cfg: ProjectConfig):
    shape = tuple(G.img_shape)
    if tuple(target.shape) != (1, *shape):
        raise ValueError(f"target must be [1, {', '.join(map(str, shape))}] in [-1, 1], got {list(target.shape)}")
    if mask is not None and (mask.shape[-2:] != target.shape[-2:] or float(mask.sum()) <= 0):
        raise ValueError("mask must be [1, 1, H, W] with at least one known pixel")
    if cfg.noise != "off" and not noise_modules(G):
        raise UserError("--noise: this generator has no noise inputs (use_noise: false); drop --noise")
    if cfg.space == "z" and getattr(G, "z_dim", 0) < 1:
        raise UserError("--space z: this generator has no z input; use --space w or w+")


def project(G: nn.Module, target: torch.Tensor, cfg: ProjectConfig, mask: torch.Tensor | None = None,
            perceptual: Perceptual | None = None, c: torch.Tensor | None = None,
            on_step: StepCallback | None = None, init_ws: torch.Tensor | None = None) -> Projection:
    """Project target [1, C, H, W] (in [-1, 1], G's shape, on G's device) into G's latent space.

    mask [1, 1, H, W]: 1 = known pixel, 0 = left to G (every loss ignores the target there).
    perceptual: (img, target) -> [N], needed when cfg.loss has a perceptual term.
    c: [1] class label of a conditional G. init_ws: start from these ws [num_ws, w_dim] (space w+ only;
    w takes their mean) instead of w_avg. on_step(step, stats, img) runs every cfg.log_every steps.
    """
    cfg.check()
    _check_inputs(G, target, mask, cfg)
    t0 = time.perf_counter()
    with frozen(G):
        w_avg, sigma_w = w_stats(G, c, cfg.w_avg_samples, cfg.seed, cfg.w_avg)
        latent = Latent(G, cfg, c, w_avg)
        if init_ws is not None:
            with torch.no_grad():
                start = init_ws.to(latent.param.device).float()
                if cfg.space == "w+":
                    latent.param.copy_(start[None])
                elif cfg.space == "w":
                    latent.param.copy_(start.mean(0, keepdim=True))
        maps = {n: m.noise_const.detach().clone().float().requires_grad_(cfg.noise != "off")
                for n, m in noise_modules(G)}
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        target_u8 = to_uint8(target)[0].numpy()
        mask_np = None if mask is None else mask[0, 0].cpu().numpy()
        history: list[dict] = []

        def log(step: int, stats: dict, img: torch.Tensor):
            if step % cfg.log_every and step != total_steps - 1:
                return
            stats = {**stats, "psnr": psnr(to_uint8(img.detach())[0].numpy(), target_u8, mask_np), "step": step}
            history.append(stats)
            if on_step is not None:
                on_step(step, stats, img.detach())

        total_steps = cfg.steps + (cfg.noise_steps if cfg.noise == "after" else 0)
        with explicit_noise(G, maps):
            _latent_phase(G, cfg, latent, maps, target, mask, perceptual, sigma_w, gen, log)
            if cfg.noise == "after":
                _noise_phase(G, cfg, latent, maps, target, mask, log)
            with torch.no_grad():
                ws = latent.ws()
                img = latent.hooks.synthesis(G, ws, "const")
    return Projection(ws=ws[0].detach().float().cpu(), image=to_uint8(img)[0].numpy(),
                      noise={n: v.detach().cpu() for n, v in maps.items()} if cfg.noise != "off" else {},
                      steps=total_steps, seconds=time.perf_counter() - t0, history=history,
                      z=latent.param.detach()[0].cpu() if cfg.space == "z" else None)


def _latent_phase(G, cfg: ProjectConfig, latent: Latent, maps: dict, target, mask, perceptual, sigma_w: float,
                  gen: torch.Generator, log) -> None:
    """Phase 1: the latent (and with noise = joint the noise maps) under cfg.loss."""
    joint = cfg.noise == "joint"
    noise_params = list(maps.values()) if joint else []
    opt = torch.optim.Adam([latent.param] + noise_params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    for step in range(cfg.steps):
        t = step / cfg.steps
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, t, cfg.lr)
        ws = latent.ws(sigma_w * latent_noise_at(cfg, t), gen)
        img = latent.hooks.synthesis(G, ws, "const")  # [1, C, H, W]
        loss, stats = _loss(cfg, img, target, mask, perceptual)
        if joint and cfg.noise_reg > 0:
            reg = noise_regularization(noise_params)
            stats["noise_reg"] = float(reg.detach())
            loss = loss + cfg.noise_reg * reg
        stats.update(loss=float(loss.detach()), lr=opt.param_groups[0]["lr"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if joint and cfg.renormalize_noise:
            renormalize_(noise_params)
        log(step, stats, img)


def _noise_phase(G, cfg: ProjectConfig, latent: Latent, maps: dict, target, mask, log) -> None:
    """Phase 2 (Image2StyleGAN++): the noise maps alone under the pixel MSE, the latent fixed."""
    noise_params = list(maps.values())
    with torch.no_grad():
        ws = latent.ws()
    opt = torch.optim.Adam(noise_params, lr=cfg.noise_lr, betas=tuple(cfg.betas), eps=cfg.eps)
    for i in range(cfg.noise_steps):
        img = latent.hooks.synthesis(G, ws, "const")
        loss, stats = _loss(cfg, img, target, mask, None, mse_only=True)
        if cfg.noise_reg > 0:
            reg = noise_regularization(noise_params)
            stats["noise_reg"] = float(reg.detach())
            loss = loss + cfg.noise_reg * reg
        stats.update(loss=float(loss.detach()), lr=cfg.noise_lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cfg.renormalize_noise:
            renormalize_(noise_params)
        log(cfg.steps + i, stats, img)
