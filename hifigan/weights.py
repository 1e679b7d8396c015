"""Weights files the user gives by path (Inception, VGG): read weights-only, loaded strictly, every
problem one line naming the file and what was expected. Nothing here downloads."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from hifigan.errors import UserError


def weights_path(path, what: str, files: str, option: str) -> Path:
    """`path` as an existing file, or a one-line UserError naming the command-line `option` and the file."""
    if path is None or str(path) == "":
        raise UserError(f"this needs {what} weights: pass {option} FILE, the file {files}; nothing is downloaded")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{p}: no such {what} weights file; expected {files}")
    return p


def load_state(path: Path, what: str, expected: str) -> dict:
    """A weights-only state dict from `path`, or a one-line UserError naming the file expected."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before failing
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unreadable or hostile file: one line)
        raise UserError(f"{path}: not a readable {what} weights file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:120] if str(e) else ''}); expected {expected}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: holds no {what} state dict of tensors; expected {expected}")
    return state


def load_into(net: nn.Module, state: dict, path: Path, what: str, expected: str) -> nn.Module:
    """Load `state` strictly into `net` with one-line errors for missing, unexpected or mis-shaped keys."""
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}" if unexpected
                  else f"{wrong[0]} is {list(state[wrong[0]].shape)}, needs {list(own[wrong[0]].shape)}")
        raise UserError(f"{path}: not the {what} this metric needs ({detail}); expected {expected}")
    net.load_state_dict(state, strict=False)
    return net.eval().requires_grad_(False)
