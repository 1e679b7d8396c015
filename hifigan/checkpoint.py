"""Checkpoints: safetensors weights that rebuild their network alone, plus one training-state file.

    RUN_DIR/checkpoints/
        latest                      name of the newest complete checkpoint (replaced atomically)
        step-00001234/
            G.safetensors           weights + metadata {arch, net config, run config, step, kimg}
            D.safetensors
            G_ema.safetensors
            state.pt                optimizers, scalers, step, nimg, every rank's RNG states,
                                    the shared latent generator, data position, weight digests

A checkpoint is written into a hidden temporary folder and renamed into place, then `latest` is
replaced (hifigan.io); a kill at any moment leaves the previous checkpoint intact. Loading never
unpickles code: weights through safetensors, the state through `torch.load(weights_only=True)`.

`load_generator(path)` is how anything outside training (sampling, metrics, benchmarks) gets a
generator: from a run dir, a checkpoints dir, one checkpoint dir or a .safetensors file.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from hifigan import io, registry
from hifigan.errors import UserError
from hifigan.schema import ConfigError

FORMAT = "hifigan-net"
VERSION = "1"


def _fsync_dir_tree(folder: Path) -> None:
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def net_tensors(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def digest(nets: dict[str, nn.Module]) -> str:
    """sha256 over every parameter and buffer, to compare ranks bit for bit."""
    h = hashlib.sha256()
    for name in sorted(nets):
        for k, v in sorted(net_tensors(nets[name]).items()):
            h.update(f"{name}.{k}".encode())
            h.update(v.numpy().tobytes() if v.dtype != torch.bfloat16 else v.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def save(root: Path, step: int, nets: dict[str, tuple], state: dict, meta: dict, keep: int) -> Path:
    """Write checkpoint `step-{step}` under `root`. `nets` maps file name -> (module, kind, arch)."""
    from safetensors.torch import save_file
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final, tmp = root / name, root / f".{name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for fname, (net, kind, arch) in nets.items():
        md = {"format": FORMAT, "version": VERSION, "role": fname, "kind": kind, "arch": arch,
              "net_config": json.dumps(asdict(net.cfg)), **{k: str(v) for k, v in meta.items()}}
        save_file(net_tensors(net), str(tmp / f"{fname}.safetensors"), metadata=md)
    torch.save(state, tmp / "state.pt")
    _fsync_dir_tree(tmp)
    if final.exists():  # the same step saved again (e.g. exit right after a periodic save)
        trash = root / f".{name}.old{os.getpid()}"
        os.rename(final, trash)
        shutil.rmtree(trash)
    os.rename(tmp, final)
    io.atomic_write(root / "latest", lambda path: Path(path).write_text(name + "\n"))
    prune(root, keep, protect=name)
    return final


def prune(root: Path, keep: int, protect: str) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for p in done[:-keep] if keep > 0 else []:
        if p.name != protect:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".step-*.tmp*"):  # left by a kill during an earlier save
        shutil.rmtree(p, ignore_errors=True)


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under a checkpoints folder, or None.

    Normally the one `latest` names; if that folder is gone (a kill while re-saving the same
    step), the newest complete `step-*` folder instead.
    """
    ptr = root / "latest"
    if not ptr.is_file():
        return None
    ckpt = root / ptr.read_text().strip()
    if (ckpt / "state.pt").is_file():
        return ckpt
    complete = sorted(p for p in root.glob("step-*") if (p / "state.pt").is_file())
    if not complete:
        raise UserError(f"{ptr}: points to {ckpt.name}, which is missing, and no complete step-* folder is left; "
                        f"start a new run_dir")
    return complete[-1]


def resolve(path) -> Path:
    """A run dir, a checkpoints dir, a checkpoint dir or a .safetensors file -> the checkpoint dir or file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{p}: no such file or folder; give a run dir, a checkpoint folder or a .safetensors file")
    if p.is_file():
        return p
    for root in (p / "checkpoints", p):
        if (root / "latest").is_file():
            return latest(root)
    if any(p.glob("*.safetensors")):
        return p
    raise UserError(f"{p}: holds no hifigan checkpoint (no checkpoints/latest, no .safetensors files)")


def read_net(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of one network file, with one-line errors for foreign or corrupt files."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
            if md.get("format") != FORMAT:
                raise UserError(f"{path}: not a hifigan network file (no hifigan metadata); "
                                f"give a checkpoint written by launch/train.py")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except UserError:
        raise
    except Exception as e:  # safetensors raises its own error types for corrupt headers and data
        raise UserError(f"{path}: corrupt or unreadable safetensors file ({str(e).splitlines()[0][:120]})") from None
    return md, tensors


def load_net_into(net: nn.Module, path: Path, arch: str) -> dict:
    """Load weights into an existing network after checking the file holds the same architecture."""
    md, tensors = read_net(path)
    if md.get("arch") != arch:
        raise UserError(f"{path}: holds a {md.get('arch')!r} {md.get('kind')}, but this run builds {arch!r}; "
                        f"use the matching config or a new run_dir")
    try:
        net.load_state_dict(tensors)
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit this run's {arch!r} network (different sizes: "
                        f"{str(e).splitlines()[1].strip()[:100] if len(str(e).splitlines()) > 1 else e}); "
                        f"use the matching config or a new run_dir") from None
    return md


def build_net(path: Path) -> tuple[nn.Module, dict]:
    """Rebuild a network from its file alone: kind, arch and config from the metadata, then the weights."""
    md, _ = read_net(path)
    reg = registry.by_kind(md.get("kind"))
    if reg is None or md.get("arch") not in reg.names():
        raise UserError(f"{path}: unknown network kind/arch {md.get('kind')}/{md.get('arch')} "
                        f"(written by a newer hifigan?)")
    try:
        net = reg.build(md["arch"], json.loads(md["net_config"]))
    except (ConfigError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: its network config does not fit this hifigan ({e})") from None
    load_net_into(net, path, md["arch"])
    return net, md


def load_state(ckpt: Path) -> dict:
    path = ckpt / "state.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: missing; the checkpoint is incomplete (start a new run_dir)") from None
    except Exception as e:
        raise UserError(f"{path}: corrupt or not a hifigan training state ({str(e).splitlines()[0][:120]})") from None


def load_generator(path, device: str | None = None) -> nn.Module:
    """The generator of a run dir, checkpoints dir, checkpoint dir or .safetensors file: G_ema if the
    checkpoint has one, else G; on `device` (default cuda if available), in eval mode, without gradients."""
    ckpt = resolve(path)
    if ckpt.is_dir():
        files = [ckpt / "G_ema.safetensors", ckpt / "G.safetensors"]
        file = next((f for f in files if f.is_file()), None)
        if file is None:
            raise UserError(f"{ckpt}: no G_ema.safetensors or G.safetensors in this checkpoint")
    else:
        file = ckpt
    G, md = build_net(file)
    if md.get("kind") != "generator":
        raise UserError(f"{file}: holds a {md.get('kind')}, not a generator; give G_ema.safetensors or a run dir")
    return G.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval().requires_grad_(False)
