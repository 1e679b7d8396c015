"""What an objective receives and returns.

An objective turns `(phase name, nets, batch)` into named losses (summed by the trainer, which
owns backward, optimizer steps, requires_grad toggling and statistics) and named statistics.
It never calls a collective and never steps an optimizer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch

from hifigan.config import PhaseConfig


class Randomness(Protocol):
    """Random draws for this rank's share of the global batch (see train/sampler.py)."""
    size: int                                                 # n, the samples in this share
    def randn(self, *dims: int) -> torch.Tensor: ...          # [n, *dims] standard normal
    def randint(self, high: int) -> torch.Tensor: ...         # [n] uniform in [0, high)
    def rand(self, *dims: int) -> torch.Tensor: ...           # [n, *dims] uniform in [0, 1)


@dataclass
class Batch:
    img: Optional[torch.Tensor]  # [n, C, H, W] real images in [-1, 1], None when the phase uses no reals
    c: Optional[torch.Tensor]    # [n] real class labels (int64), None for unlabeled data
    rand: Randomness             # latents and random labels, consistent with the global batch
    mean: Callable = lambda x: x  # mean of a statistic over ranks (the trainer's hook; objectives call no collective)


class Objective:
    """Base: subclasses set `default_phases` and implement `__call__`."""
    default_phases: list[PhaseConfig] = []
    real_phases: tuple[str, ...] = ("Dmain",)  # phases that draw a batch of real images
    reuse_real_phases: tuple[str, ...] = ()    # phases that see the reals of the last real phase again (lazy R1)

    def __init__(self, cfg):
        self.cfg = cfg

    def needs_real(self, phase: str) -> bool:
        return phase in self.real_phases

    def __call__(self, phase: str, nets: dict, batch: Batch) -> tuple[dict, dict]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Running statistics an objective keeps between steps (checkpointed for exact resume)."""
        return {}

    def load_state_dict(self, state: dict, device) -> None:
        pass
