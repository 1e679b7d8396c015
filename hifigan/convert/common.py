"""What a format reader returns, and the checks every converted network goes through."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hifigan import registry
from hifigan.errors import UserError, one_line
from hifigan.nn.fir import setup_filter
from hifigan.schema import ConfigError

ARCH = "stylegan2"


@dataclass
class Converted:
    """Configs of our StyleGAN2 G and D, and hifigan-named tensors per network file."""
    source: str                         # the file, for messages and metadata
    fmt: str                            # "stylegan2-ada-pytorch" / "rosinality"
    G: dict                             # G's Config fields
    D: dict | None                      # D's Config fields; None when the file has no discriminator
    tensors: dict                       # "G" / "G_ema" / "D" -> {name: tensor}
    notes: list = field(default_factory=list)  # printed after converting


def build(kind: str, cfg: dict, where: str) -> nn.Module:
    """Our network for `cfg`, or a one-line error naming the setting it cannot take."""
    reg = registry.GENERATORS if kind == "G" else registry.DISCRIMINATORS
    try:
        return reg.build(ARCH, cfg)
    except (ConfigError, ValueError, TypeError) as e:
        raise UserError(f"{where}: its {kind} has settings hifigan's StyleGAN2 cannot build ({one_line(e, 200)})") from None


def fit(net: nn.Module, tensors: dict, where: str, what: str) -> None:
    """Load `tensors` into `net` exactly: every name present, no extra, same shapes, finite."""
    want = net.state_dict()
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    if missing or extra:
        name = (missing or extra)[0]
        raise UserError(f"{where}: {what} does not match a StyleGAN2 network ({'missing' if missing else 'unexpected'} "
                        f"tensor {name}{f' and {len(missing) + len(extra) - 1} more' if len(missing) + len(extra) > 1 else ''}); "
                        f"only StyleGAN2 config F-style networks (skip G, residual D) convert")
    for k, v in want.items():
        t = tensors[k]
        if tuple(t.shape) != tuple(v.shape):
            raise UserError(f"{where}: {what} tensor {k} is {list(t.shape)}, expected {list(v.shape)} for the "
                            f"settings read from the file; the file is damaged or not a StyleGAN2 network")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"{where}: {what} tensor {k} holds NaN or infinity; the network diverged or the file is damaged")
    net.load_state_dict({k: v.to(want[k].dtype) for k, v in tensors.items()})


def check_filter(f: torch.Tensor, where: str, name: str) -> None:
    """The reference's resample filters must be the normalized [1, 3, 3, 1] that ours hard-wires."""
    ref = setup_filter((1, 3, 3, 1))
    g = f.float().reshape(ref.shape) if f.numel() == ref.numel() else None
    if g is None or not (torch.allclose(g, ref, atol=1e-6) or torch.allclose(g, ref * 4, atol=1e-6)):
        raise UserError(f"{where}: {name} is not the [1, 3, 3, 1] resampling filter hifigan's StyleGAN2 uses; "
                        f"this network cannot convert")
