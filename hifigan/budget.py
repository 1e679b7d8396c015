"""Memory budget: refuse a network that cannot fit before any of its memory is allocated.

A network is first built on the meta device (every parameter and buffer has its shape and dtype
but no storage), so its size is known in microseconds even when the config asks for terabytes.
Training holds more than the weights: each trained network also needs its gradients and the
optimizer's state (Adam: two moments), G has a G_ema copy, and at least one batch of images
exists at the output resolution. That sum is a lower bound (activations are not counted), so a
run it lets through can still run out of memory; one it refuses cannot fit, and fails in one line
instead of swapping the machine to a halt or being killed by the kernel.

`total_memory(device)` is the one place the machine's memory is read; tests replace it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from hifigan.errors import UserError

# optimizer state per parameter element, in weights' units (momentum buffers; SGD without momentum: none)
OPTIMIZER_STATE = {"adam": 2, "rmsprop": 1, "sgd": 0}
SIZE_FIELDS = ("resolution", "channel_base", "channel_max", "width", "max_width", "hidden", "z_dim", "w_dim",
               "code_dim", "channels")  # what a user lowers to make a network smaller, where the Config has it


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (a container's), if one is set."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # cgroup v1 writes a huge number for "no limit"
            return int(text)
    return None


def total_memory(device) -> int | None:
    """Bytes of memory `device` has in all (CUDA: the GPU's; CPU: physical RAM, or the container's
    limit when lower), or None when it cannot be told."""
    device = torch.device(device)
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[1])
        if device.type == "cpu":
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            limit = _cgroup_limit()
            return min(ram, limit) if limit else ram
    except (ValueError, OSError, RuntimeError, AttributeError):
        pass
    return None


def build_on_meta(cls, cfg) -> nn.Module | None:
    """`cls(cfg)` with every tensor on the meta device (no storage), or None if this network cannot
    be built that way (then there is no estimate and the real build goes ahead unchecked)."""
    try:
        with torch.device("meta"):
            return cls(cfg)
    except Exception:  # an architecture that makes tensors elsewhere (numpy, an explicit device): no estimate
        return None


def tensor_bytes(net: nn.Module) -> int:
    """Bytes of every parameter and buffer of `net` (shared tensors counted once)."""
    seen, total = set(), 0
    for t in [*net.parameters(), *net.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def gib(n: float) -> str:
    """`n` bytes for a message: '3.2 GiB', '120 MiB', '41,210 TiB'."""
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale or unit == "KiB":
            x = n / scale
            return f"{x:,.0f} {unit}" if x >= 100 else f"{x:.3g} {unit}"
    return f"{n} B"


def describe(name: str, arch: str, cfg) -> str:
    """'G (stylegan2, resolution 1024)': a network as a message names it."""
    res = getattr(cfg, "resolution", None)
    return f"{name} ({arch}{f', resolution {res}' if res is not None else ''})"


def size_hint(name: str, cfg) -> str:
    """'lower G.resolution, G.channel_base, ...': the fields that make this network smaller."""
    fields = [f for f in SIZE_FIELDS if hasattr(cfg, f)]
    return f"lower {', '.join(f'{name}.{f}' for f in fields[:4])}" if fields else f"make {name} smaller"


def check(what: str, need: int, device, fix: str, detail: str = "") -> None:
    """Raise a one-line UserError if `need` bytes exceed what `device` has."""
    have = total_memory(device)
    if have is not None and need > have:
        device = torch.device(device)
        where = "this machine" if device.type == "cpu" else f"this GPU ({device})"
        raise UserError(f"{what}: would need at least {gib(need)}{detail}, {where} has {gib(have)}; {fix}")


def training_device() -> torch.device:
    """Where training will hold the networks (the backends use CUDA when there is one)."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def optimizer_copies(optim) -> int:
    """Tensors of the weights' size an optimizer keeps per trained network (Adam: two moments)."""
    if optim is None:
        return 0
    return OPTIMIZER_STATE.get(optim.name, 2) + int(optim.name != "adam" and optim.momentum > 0)


def check_training(cfg, networks: dict) -> None:
    """Before `build_nets` allocates anything: each network of the recipe, then all of them together,
    must fit. `networks` maps section name -> registry (hifigan.registry.NETWORKS)."""
    device, total, parts = training_device(), 0, []
    world = max(int(os.environ.get("WORLD_SIZE", "1") or 1), 1)
    batch = cfg.train.batch_gpu or max(cfg.train.batch_size // world, 1)
    for name, reg in networks.items():
        spec = getattr(cfg, name)
        meta = build_on_meta(reg.get(spec.name), spec.cfg) if spec is not None else None
        if meta is None:
            continue
        weights, state = tensor_bytes(meta), optimizer_copies(cfg.optim.get(name))
        copies = 2 + state + (name == "G")  # weights, gradients, optimizer state, G_ema
        need = weights * copies
        shape = getattr(meta, "img_shape", None)
        if name == "G" and shape is not None:
            need += batch * int(torch.Size(shape).numel()) * 4  # one float32 batch of G's images
        what = describe(name, spec.name, spec.cfg)
        fix = f"{size_hint(name, spec.cfg)} (or train on a machine with more memory)"
        check(what, weights, "cpu", fix)  # the networks are built on the CPU first
        detail = (f" to train ({gib(weights)} each for weights, gradients" + (f", {state} optimizer moments" if state
                  else "") + (", G_ema and one batch of images" if name == "G" else "") + ")")
        check(what, need, device, fix, detail)
        total += need
        parts.append(f"{name} {gib(need)}")
    if len(parts) > 1:
        check(f"training {' + '.join(parts)}", total, device,
              "lower the networks' sizes or train.batch_size (or train on a machine with more memory)")
