"""Fault injection for tests of the non-finite guard, from the environment (never set in normal runs).

    HIFIGAN_INJECT_NONFINITE_GRAD=NET:FIRST-LAST[@RANK]

makes network NET's gradient non-finite (+inf into its first parameter's gradient, as an fp16 overflow
would) in every phase that trains NET at steps FIRST..LAST (inclusive), on rank RANK only (default 0),
so that the guard must carry one rank's overflow to every rank.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import torch

from hifigan.errors import UserError

ENV = "HIFIGAN_INJECT_NONFINITE_GRAD"


@dataclass(frozen=True)
class GradFault:
    net: str
    first: int
    last: int
    rank: int = 0


def from_env(nets) -> GradFault | None:
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    m = re.fullmatch(r"(\w+):(\d+)-(\d+)(?:@(\d+))?", text)
    if not m or m[1] not in nets:
        raise UserError(f"{ENV}={text!r}: expected NET:FIRST-LAST[@RANK] with NET one of {', '.join(nets)}; "
                        f"unset it for a normal run")
    return GradFault(m[1], int(m[2]), int(m[3]), int(m[4] or 0))


@contextlib.contextmanager
def injected(fault: GradFault | None, step: int, rank: int, phase_nets, nets: dict):
    """Inside, the backward of a phase that trains the faulted net at a faulted step gets +inf on this rank."""
    if fault is None or fault.net not in phase_nets or rank != fault.rank or not fault.first <= step <= fault.last:
        yield
        return
    p = next(p for p in nets[fault.net].parameters() if p.requires_grad)
    hook = p.register_hook(lambda g: torch.full_like(g, float("inf")))
    try:
        yield
    finally:
        hook.remove()
