"""What an objective receives and returns, and how its phases are declared.

An objective turns `(phase name, nets, batch)` into named losses (summed by the trainer, which
owns backward, optimizer steps, requires_grad toggling and statistics) and named statistics.
It never steps an optimizer and calls no collective itself: the one cross-rank operation it may
reach is `Batch.cross_rank_mean`, a hook the trainer fills from its backend (the path-length
running mean and BEGAN's equilibrium term are means over the whole global batch).

Phases are a table: each `PhaseSpec` names the method that computes it, the networks it must find,
the networks it may train, and whether it draws real images. `check(nets, phases)` runs once when
the trainer is built (so `--dry-run` rejects a schedule that cannot train), then `check_nets` lets
a family verify its networks (heads, class counts, code sizes); `__call__` does no checking.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch

from hifigan.config import PhaseConfig
from hifigan.errors import UserError


class Randomness(Protocol):
    """Random draws for this rank's share of the global batch (see train/sampler.py)."""
    size: int                                                 # n, the samples in this share
    device: torch.device                                      # where the draws land
    def randn(self, *dims: int) -> torch.Tensor: ...          # [n, *dims] standard normal
    def randint(self, high: int) -> torch.Tensor: ...         # [n] uniform in [0, high)
    def rand(self, *dims: int) -> torch.Tensor: ...           # [n, *dims] uniform in [0, 1)
    def shared_rand(self, k: int) -> torch.Tensor: ...        # [k] uniform in [0, 1), CPU, one draw for the whole global batch


def _local(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class Batch:
    img: Optional[torch.Tensor]  # [n, C, H, W] real images in [-1, 1], None when the phase uses no reals
    c: Optional[torch.Tensor]    # [n] real class labels (int64), None for unlabeled data
    rand: Randomness             # latents and random labels, consistent with the global batch
    # The mean of a detached statistic over all ranks (the backend's all_mean; identity on one process).
    # The only collective an objective may reach; every rank must call it the same number of times.
    cross_rank_mean: Callable[[torch.Tensor], torch.Tensor] = _local
    nimg: int = 0                # real images drawn so far, this step's draw included (schedules that are a function of progress)


@dataclass(frozen=True)
class PhaseSpec:
    """One phase an objective can compute."""
    method: str                 # the objective's method: method(nets, batch) -> (losses, stats)
    requires: tuple = ()        # networks that must exist for this phase (besides those it trains)
    trains: tuple = ()          # networks a schedule may list in this phase's `nets`
    reals: str = ""             # "draw": takes the next real batch; "reuse": the last drawn one again; "": none
    second_order: bool = False  # its loss differentiates a gradient (R1, path length, gradient penalty)


def dmain(requires: tuple = ("G", "D"), second_order: bool = False) -> PhaseSpec:
    """The usual D phase: method d_main, trains D, draws reals."""
    return PhaseSpec("d_main", requires=requires, trains=("D",), reals="draw", second_order=second_order)


def gmain(requires: tuple = ("G", "D")) -> PhaseSpec:
    """The usual G phase: method g_main, trains G."""
    return PhaseSpec("g_main", requires=requires, trains=("G",))


class Objective:
    """Base: subclasses fill `phases` (name -> PhaseSpec), `default_phases`, and the phase methods."""
    phases: dict[str, PhaseSpec] = {}
    default_phases: list[PhaseConfig] = []
    supports_augment = False  # True: the family applies the trainer's `augment` policy to every image D sees
    augment = None            # set by the trainer (hifigan/train/augment.py) when supports_augment

    def __init__(self, cfg):
        self.cfg = cfg

    @property
    def name(self) -> str:
        return getattr(self, "registry_name", type(self).__name__)

    # -- the checks, once at build time --------------------------------------------------------
    def check(self, nets: dict, phases) -> None:
        """Reject a schedule or a set of networks this objective cannot train (one-line UserError).
        `phases`: objects with name, nets (train/phases.Phase)."""
        for i, ph in enumerate(phases):
            spec = self.phases.get(ph.name)
            if spec is None:
                close = difflib.get_close_matches(ph.name, list(self.phases), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise UserError(f"phases.{i}.name: objective {self.name!r} has no phase {ph.name!r} "
                                f"({hint}its phases: {', '.join(self.phases)})")
            wrong = [n for n in ph.nets if n not in spec.trains]
            if wrong:
                raise UserError(f"phases.{i}.nets: phase {ph.name} of objective {self.name!r} cannot train "
                                f"{', '.join(wrong)} (it trains {', '.join(spec.trains)})")
            missing = [n for n in dict.fromkeys(spec.requires + tuple(ph.nets)) if n not in nets]
            if missing:
                raise UserError(f"phases.{i}: phase {ph.name} of objective {self.name!r} needs network "
                                f"{missing[0]}; add a {missing[0]} section to the recipe")
        used = {n for spec in self.phases.values() for n in (*spec.requires, *spec.trains)}
        for name in nets:
            if name not in used:
                raise UserError(f"{name}: objective {self.name!r} does not use a network {name} (it uses "
                                f"{', '.join(sorted(used))}); remove the {name} section")
        if not any(self.phases[p.name].reals == "draw" for p in phases):
            draws = [n for n, s in self.phases.items() if s.reals == "draw"]
            raise UserError("phases: no phase shows real images to D, so training would never advance; "
                            f"include one of {', '.join(draws)}")
        first = next(p.name for p in phases if self.phases[p.name].reals)
        if self.phases[first].reals == "reuse":
            raise UserError(f"phases: {first} reuses the real images of an earlier phase; put a phase that "
                            f"draws them ({', '.join(n for n, s in self.phases.items() if s.reals == 'draw')}) first")
        self.check_nets(nets)

    def check_nets(self, nets: dict) -> None:
        """A family's own checks of its networks (heads, class counts, code sizes)."""

    def load_files(self) -> None:
        """Read the local files this objective needs (e.g. a perceptual network's weights); a missing or
        wrong one is a one-line UserError. Called once by the trainer after `check` (a dry run warns)."""

    # -- what the trainer asks -----------------------------------------------------------------
    def reals(self, phase: str) -> str:
        """"draw", "reuse" or "" for `phase` (see PhaseSpec)."""
        return self.phases[phase].reals

    def second_order(self, phase: str) -> bool:
        """Whether `phase`'s loss differentiates a gradient (a backend that frees weights between the forward
        and the backward, ZeRO-3, keeps that phase's weights whole for the second backward)."""
        return self.phases[phase].second_order

    def __call__(self, phase: str, nets: dict, batch: Batch) -> tuple[dict, dict]:
        return getattr(self, self.phases[phase].method)(nets, batch)

    def state_dict(self) -> dict:
        """Running statistics an objective keeps between steps (checkpointed for exact resume)."""
        return {}

    def load_state_dict(self, state: dict, device) -> None:
        pass


# -- the prologue most phases share ----------------------------------------------------------------

def fake_inputs(G, batch: Batch):
    """z [n, z_dim] and, for conditional generators, uniformly drawn class labels [n]."""
    z = batch.rand.randn(G.z_dim)
    c = batch.rand.randint(G.num_classes) if G.num_classes else None
    return z, c


def d_labels(D, c):
    """The labels a (possibly unconditional) D takes: c when D is conditional, else None."""
    return c if getattr(D, "num_classes", 0) else None


def fakes(G, batch: Batch, **kw):
    """Draw z (and c) and run G: (fake [n, C, H, W], c or None)."""
    z, c = fake_inputs(G, batch)
    return G(z, c, **kw), c


def real_fake_logits(D, batch: Batch, fake: torch.Tensor, c, **kw):
    """D on the batch's reals and on the (detached) fakes: (logits_real, logits_fake); kw go to D (heads)."""
    return D(batch.img, d_labels(D, batch.c), **kw), D(fake.detach(), d_labels(D, c), **kw)
