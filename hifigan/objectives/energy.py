"""Energy-based GAN objectives with an autoencoder D (models/energy.py): the energy of an image is
D's reconstruction error.

EBGAN (Zhao, Mathieu and LeCun 2017, "Energy-based Generative Adversarial Network",
arXiv:1609.03126). Energy E(x) = mean over pixels of (D(x) - x)^2, per sample.
    D: E(x) + max(0, m - E(G(z)))          (a fake whose energy is above the margin m pushes nothing)
    G: E(G(z)) + pt_weight * PT(S)
with the pull-away term on the encoder codes s_i of the generated batch,
    PT(S) = 1 / (N (N - 1)) * sum_{i != j} (s_i . s_j / (|s_i| |s_j|))^2,
which keeps the generated codes from collapsing onto one direction (the paper: weight 0.1).
PT is computed per micro-batch (the batch the objective sees), so with gradient accumulation its
N is the micro-batch size.

BEGAN (Berthelot, Schumm and Metz 2017, "BEGAN: Boundary Equilibrium Generative Adversarial
Networks", arXiv:1703.10717). L(v) = mean over pixels of |v - D(v)|, per sample, then the batch mean.
    D: L(x) - k_t L(G(z_D))                G: L(G(z_G))
    k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z_D))), 0, 1)
    M = L(x) + |gamma L(x) - L(G(z_D))|    (the convergence measure)
Where k is updated: the trainer runs Dmain and Gmain as separate phases and calls the objective
once per accumulation micro-batch, with no end-of-step hook. So every Dmain call uses the same k_t
and adds its detached gamma L(x) - L(G(z_D)) (averaged over ranks through batch.mean, so every rank
keeps the same k) to a pending sum; the first call of any other phase (Gmain) applies one update with
the mean of the pending values, i.e. one update per D step from the micro-batch mean, from the
values D was trained on (as the paper's simultaneous update does). With Dmain repeats > 1 the
repeats of one training step share k_t and make one update from their common mean. The pending
sum is part of the state dict, so a resume continues bit for bit wherever the checkpoint fell.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hifigan.config import PhaseConfig
from hifigan.errors import UserError
from hifigan.objectives.base import Batch, Objective, dmain, fakes, gmain
from hifigan.schema import bounded
from hifigan.registry import OBJECTIVES


def mse_energy(img: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """[N]: mean over pixels of the squared reconstruction error."""
    return (recon - img).square().flatten(1).mean(dim=1)


def l1_energy(img: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """[N]: mean over pixels of the absolute reconstruction error (BEGAN's L)."""
    return (recon - img).abs().flatten(1).mean(dim=1)


def pull_away(codes: torch.Tensor) -> torch.Tensor:
    """EBGAN's pull-away term of codes [N, D]: mean squared cosine similarity over pairs i != j."""
    n = codes.shape[0]
    if n < 2:
        return codes.sum() * 0  # no pairs; keeps the graph for backward
    s = codes.flatten(1)
    s = s / s.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos2 = (s @ s.t()).square()  # [N, N]
    return (cos2.sum() - cos2.diagonal().sum()) / (n * (n - 1))


def _check_autoencoder(nets: dict, name: str) -> None:
    G, D = nets["G"], nets["D"]
    if G.num_classes or D.num_classes:
        raise UserError(f"objective {name!r} is unconditional: set G.num_classes=0 (and D.num_classes=0)")
    if not hasattr(D, "code_dim"):
        raise UserError(f"objective {name!r} scores D's reconstruction of its input: set D.arch=autoencoder")


def _recon(D, img: torch.Tensor, name: str):
    """D's reconstruction of img, checked to be an image (an autoencoder D)."""
    out = D(img, heads=True)
    recon = out.get("recon") if isinstance(out, dict) else out
    if recon is None or recon.shape != img.shape:
        raise UserError(f"objective {name!r} scores D's reconstruction of its input: set D.arch=autoencoder")
    return out if isinstance(out, dict) else {"recon": recon}


@OBJECTIVES.register("ebgan")
class EBGANObjective(Objective):
    """Dmain: E(x) + max(0, m - E(G(z))); Gmain: E(G(z)) + pt_weight * PT(codes of G(z))."""

    @dataclass(kw_only=True)
    class Config:
        margin: float = bounded(1.0, gt=0)     # m: D stops pushing a fake's energy (per-pixel MSE) up once it exceeds m
        pt_weight: float = bounded(0.1, ge=0)  # weight of the pull-away term in G's loss (EBGAN-PT: 0.1); 0 = plain EBGAN

        def __post_init__(self):
            if self.margin <= 0:
                raise ValueError(f"margin must be > 0, got {self.margin}")
            if self.pt_weight < 0:
                raise ValueError(f"pt_weight must be >= 0, got {self.pt_weight}")

    phases = {"Dmain": dmain(), "Gmain": gmain()}
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]

    def check_nets(self, nets: dict) -> None:
        _check_autoencoder(nets, "ebgan")

    def d_main(self, nets: dict, batch: Batch):
        D = nets["D"]
        fake, _ = fakes(nets["G"], batch)  # [n, C, H, W]
        e_real = mse_energy(batch.img, _recon(D, batch.img, "ebgan")["recon"])
        e_fake = mse_energy(fake.detach(), _recon(D, fake.detach(), "ebgan")["recon"])
        hinge = (self.cfg.margin - e_fake).clamp_min(0)
        stats = {"E_real": e_real.mean(), "E_fake": e_fake.mean(),
                 "fake_below_margin": (e_fake < self.cfg.margin).float().mean()}
        return {"real": e_real.mean(), "fake": hinge.mean()}, stats

    def g_main(self, nets: dict, batch: Batch):
        fake, _ = fakes(nets["G"], batch)
        out = _recon(nets["D"], fake, "ebgan")
        e_fake = mse_energy(fake, out["recon"])
        losses = {"adv": e_fake.mean()}
        pt = pull_away(out["code"])
        if self.cfg.pt_weight:
            losses["pt"] = pt * self.cfg.pt_weight
        return losses, {"E_fake_for_G": e_fake.mean(), "pull_away": pt.detach()}


@OBJECTIVES.register("began")
class BEGANObjective(Objective):
    """Dmain: L(x) - k_t L(G(z)); Gmain: L(G(z)); k_t kept in equilibrium gamma = L(G(z)) / L(x)."""

    @dataclass(kw_only=True)
    class Config:
        gamma: float = bounded(0.5, gt=0, le=1)   # diversity ratio gamma = E[L(G(z))] / E[L(x)] that k_t steers to (0.5, 0.7 typical)
        lambda_k: float = bounded(0.001, ge=0)    # proportional gain of the k_t update (the paper: 0.001)
        k_init: float = bounded(0.0, ge=0, le=1)  # k_0 (the paper: 0)

        def __post_init__(self):
            if not 0 < self.gamma <= 1:
                raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
            if self.lambda_k < 0 or not 0 <= self.k_init <= 1:
                raise ValueError(f"lambda_k must be >= 0 and k_init in [0, 1], got {self.lambda_k}, {self.k_init}")

    phases = {"Dmain": dmain(), "Gmain": gmain()}
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]

    def __init__(self, cfg):
        super().__init__(cfg)
        self.k = torch.tensor(float(cfg.k_init), dtype=torch.float64)  # k_t, float64: 1e-4 steps add up exactly
        self.pending = torch.zeros((), dtype=torch.float64)  # sum of gamma L(x) - L(G(z)) over this D step's calls
        self.pending_n = 0

    def _to(self, device) -> None:
        if self.k.device != device:
            self.k, self.pending = self.k.to(device), self.pending.to(device)

    def update_k(self) -> None:
        """Apply the D step's pending k update (once; a no-op when nothing is pending)."""
        if self.pending_n:
            self.k = (self.k + self.cfg.lambda_k * self.pending / self.pending_n).clamp(0, 1)
            self.pending = torch.zeros_like(self.pending)
            self.pending_n = 0

    def check_nets(self, nets: dict) -> None:
        _check_autoencoder(nets, "began")

    def d_main(self, nets: dict, batch: Batch):
        D = nets["D"]
        fake, _ = fakes(nets["G"], batch)  # [n, C, H, W]
        self._to(fake.device)
        l_real = l1_energy(batch.img, _recon(D, batch.img, "began")["recon"]).mean()
        l_fake = l1_energy(fake.detach(), _recon(D, fake.detach(), "began")["recon"]).mean()
        k = self.k
        balance = batch.cross_rank_mean(self.cfg.gamma * l_real.detach().double() - l_fake.detach().double())
        self.pending = self.pending + balance
        self.pending_n += 1
        m_global = batch.cross_rank_mean(l_real.detach().double()) + balance.abs()
        stats = {"L_real": l_real, "L_fake": l_fake, "k_t": k, "M": m_global}
        return {"real": l_real, "fake": -k.to(l_fake.dtype) * l_fake}, stats

    def g_main(self, nets: dict, batch: Batch):
        fake, _ = fakes(nets["G"], batch)
        self._to(fake.device)
        self.update_k()
        l_fake = l1_energy(fake, _recon(nets["D"], fake, "began")["recon"]).mean()
        return {"adv": l_fake}, {"L_fake_for_G": l_fake}

    def state_dict(self) -> dict:
        return {"k": self.k.detach().cpu(), "pending": self.pending.detach().cpu(), "pending_n": self.pending_n}

    def load_state_dict(self, state: dict, device) -> None:
        if "k" in state:
            self.k = state["k"].to(device=device, dtype=torch.float64)
            self.pending = state.get("pending", torch.zeros((), dtype=torch.float64)).to(device=device, dtype=torch.float64)
            self.pending_n = int(state.get("pending_n", 0))
