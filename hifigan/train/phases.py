"""The training schedule as data, and the optimizers it implies.

A step runs every phase whose `every` divides the step index, each `repeats` times in a row.
Lazy regularization (Karras et al. 2020, StyleGAN2, arXiv:1912.04958, appendix B): a phase that
runs every k steps has its loss scaled by k, and the optimizer of a net that has such a phase
uses lr * k/(k+1) and betas ** (k/(k+1)) so the effective step matches the non-lazy schedule.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hifigan.errors import UserError


@dataclass(frozen=True)
class Phase:
    name: str          # "Dmain", "Dreg", "Gmain", "Greg", "Cmain", "Qmain", ...
    nets: tuple        # whose parameters get gradients and a step, e.g. ("D",) or ("G", "Q")
    every: int = 1     # runs when step % every == 0; its loss is scaled by `every`
    repeats: int = 1   # n_critic style ratios: D:G = 5:1 is Dmain(repeats=5)


@dataclass(frozen=True)
class OptimPlan:
    """What a backend needs to build one network's optimizer."""
    cfg: object               # the recipe's optim.<net> section (config.OptimConfig)
    lazy_ratio: float = 1.0   # k/(k+1) when a lazy phase trains this net (see lazy_ratio)


def build_phases(specs, known_nets) -> list[Phase]:
    phases = []
    for i, s in enumerate(specs):
        unknown = [n for n in s.nets if n not in known_nets]
        if unknown or not s.nets:
            raise UserError(f"phases.{i}.nets: {unknown or '[]'} not among this model's networks "
                            f"({', '.join(known_nets)})")
        if len(set(s.nets)) != len(s.nets):
            raise UserError(f"phases.{i}.nets: {s.nets} names a network twice")
        phases.append(Phase(s.name, tuple(s.nets), s.every, s.repeats))
    return phases


def optim_plans(phases: list[Phase], optim: dict, nets) -> dict[str, OptimPlan]:
    """One plan per trained network (sorted by name), checking that the optim section matches exactly."""
    trained = sorted({n for p in phases for n in p.nets})
    for name in trained:
        if name not in optim:
            raise UserError(f"optim.{name}: missing; every trained network needs optimizer settings")
    for name in optim:
        if name not in nets:
            raise UserError(f"optim.{name}: no such network in this model ({', '.join(nets)})")
        if name not in trained:
            raise UserError(f"optim.{name}: no phase trains {name}; remove optim.{name} or list {name} in a "
                            f"phase's nets")
    return {name: OptimPlan(optim[name], lazy_ratio(phases, name)) for name in trained}


def lazy_ratio(phases: list[Phase], net: str) -> float:
    """k/(k+1) for a net trained by a main phase and a phase that runs every k > 1 steps; else 1."""
    lazy = [p.every for p in phases if net in p.nets and p.every > 1]
    main = [p for p in phases if net in p.nets and p.every == 1]
    if not lazy or not main:
        return 1.0
    k = max(lazy)
    return k / (k + 1)


def optimizer_settings(ocfg, ratio: float = 1.0) -> dict:
    """The param-group settings of optimizer `ocfg.name` (lr and Adam betas corrected by a lazy `ratio`)."""
    out = {"lr": ocfg.lr * ratio, "weight_decay": ocfg.weight_decay}
    if ocfg.name == "adam":
        out.update(betas=tuple(b ** ratio for b in ocfg.betas), eps=ocfg.eps)
    elif ocfg.name == "rmsprop":
        out.update(eps=ocfg.eps, momentum=ocfg.momentum)
    elif ocfg.name == "sgd":
        out.update(momentum=ocfg.momentum)
    else:
        raise UserError(f"optim: unknown optimizer {ocfg.name!r} (choose from adam, rmsprop, sgd)")
    return out


OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}


def build_optimizer(params, ocfg, ratio: float = 1.0) -> torch.optim.Optimizer:
    settings = optimizer_settings(ocfg, ratio)
    return OPTIMIZERS[ocfg.name](params, **settings)
