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
import io as io_bytes
import json
import os
import re
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from hifigan import io, registry
from hifigan.errors import UserError, describe_os_error, one_line
from hifigan.schema import ConfigError, short

FORMAT = "hifigan-net"
VERSION = "1"


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


STEP_RE = re.compile(r"^step-(\d{1,12})$")


class DamagedCheckpoint(UserError):
    """A checkpoint whose files are missing, truncated or corrupt (as opposed to one of another model)."""


def clean_temporaries(root: Path) -> None:
    """Remove what an interrupted save left behind: hidden `.step-*.tmp<pid>` / `.old<pid>` folders and
    `.latest.*.tmp` files. Only the run's lock holder saves, so none of them belongs to a live writer."""
    for p in [*root.glob(".step-*"), *root.glob(".latest.*.tmp")]:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save(root: Path, step: int, nets: dict[str, tuple], state: dict, meta: dict, keep: int) -> Path:
    """Write checkpoint `step-{step}` under `root`. `nets` maps file name -> (module, kind, arch).

    Every byte goes through plain file writes into a hidden temporary folder, so a full disk or a
    file-size limit is an OSError there: the temporary is removed and the error is one line saying
    that the previous checkpoint stays `latest`. Temporaries of earlier interrupted saves are
    removed before writing as well as after."""
    from safetensors.torch import save as st_save
    root.mkdir(parents=True, exist_ok=True)
    clean_temporaries(root)
    name = f"step-{step:08d}"
    final, tmp = root / name, root / f".{name}.tmp{os.getpid()}"
    try:
        tmp.mkdir()
        for fname, (net, kind, arch) in nets.items():
            md = {"format": FORMAT, "version": VERSION, "role": fname, "kind": kind, "arch": arch,
                  "net_config": json.dumps(asdict(net.cfg)), **{k: str(v) for k, v in meta.items()}}
            _write_bytes(tmp / f"{fname}.safetensors", st_save(net_tensors(net), metadata=md))
        buf = io_bytes.BytesIO()
        torch.save(state, buf)
        _write_bytes(tmp / "state.pt", buf.getbuffer())
        del buf
        if final.exists():  # the same step saved again (e.g. exit right after a periodic save)
            trash = root / f".{name}.old{os.getpid()}"
            os.rename(final, trash)
            shutil.rmtree(trash)
        os.rename(tmp, final)
        io.atomic_write(root / "latest", lambda path: Path(path).write_text(name + "\n"))
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        prev = _pointer(root)
        keep_msg = f"{prev} stays the latest checkpoint" if prev else "no earlier checkpoint exists"
        raise UserError(f"could not write checkpoint {final}: {describe_os_error(e)}; {keep_msg}") from None
    prune(root, keep, protect=name)
    return final


def prune(root: Path, keep: int, protect: str) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and STEP_RE.match(p.name))
    for p in done[:-keep] if keep > 0 else []:
        if p.name != protect:
            shutil.rmtree(p, ignore_errors=True)
    clean_temporaries(root)


def _pointer(root: Path) -> str | None:
    """The checkpoint name `latest` holds, if it is a well-formed `step-N` name; else None."""
    try:
        text = (root / "latest").read_text(errors="replace").strip()
    except OSError:
        return None
    return text if STEP_RE.match(text) else None


def complete(root: Path) -> list[Path]:
    """Checkpoint folders of `root` holding a state.pt, oldest first."""
    return sorted(p for p in root.glob("step-*") if STEP_RE.match(p.name) and (p / "state.pt").is_file())


def latest(root: Path, warn=None) -> Path | None:
    """The newest complete checkpoint under a checkpoints folder, or None when there is none.

    Normally the one `latest` names. `latest` is trusted only when it holds a `step-N` name of a
    complete folder beside it (never a path elsewhere); otherwise (garbage, a folder gone after a kill
    while re-saving the same step, another run's path) the newest complete `step-*` folder is used
    and `warn` (a callable, default stderr) says so."""
    ptr = root / "latest"
    if not ptr.exists():
        return None
    try:
        raw = ptr.read_text(errors="replace").strip()
    except OSError:
        raw = "?"
    if STEP_RE.match(raw) and (root / raw / "state.pt").is_file():
        return root / raw
    found = complete(root)
    if not found:
        raise UserError(f"{ptr}: names no complete checkpoint and no complete step-* folder is left beside it; "
                        f"start a new run_dir")
    (warn or _stderr)(f"warning: {ptr} holds {short(raw)}, not a complete step-N checkpoint of this folder; "
                      f"using the newest complete one, {found[-1].name}")
    return found[-1]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
    """(metadata, tensors) of one network file; a missing, foreign or corrupt file is a one-line
    DamagedCheckpoint."""
    from safetensors import safe_open
    if not Path(path).is_file():
        raise DamagedCheckpoint(f"{path}: missing; the checkpoint is incomplete")
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
            if md.get("format") != FORMAT:
                raise DamagedCheckpoint(f"{path}: not a hifigan network file (no hifigan metadata); "
                                        f"give a checkpoint written by launch/train.py")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except UserError:
        raise
    except Exception as e:  # safetensors raises its own error types for corrupt headers and data
        raise DamagedCheckpoint(f"{path}: corrupt or unreadable safetensors file ({one_line(e, 120)})") from None
    return md, tensors


def nonfinite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_finite(nets: dict[str, nn.Module]) -> list[str]:
    """'net.tensor' names of every non-finite parameter or buffer of `nets`."""
    return [f"{n}.{k}" for n, net in nets.items() for k in nonfinite(dict(net.state_dict()))]


def load_net_into(net: nn.Module, path: Path, arch: str) -> dict:
    """Load weights into an existing network after checking the file holds the same architecture."""
    md, tensors = read_net(path)
    if md.get("arch") != arch:
        raise UserError(f"{path}: holds a {short(md.get('arch'))} {short(md.get('kind'))}, but this run builds "
                        f"{arch!r}; use the matching config or a new run_dir")
    try:
        net.load_state_dict(tensors)
    except RuntimeError as e:
        lines = str(e).splitlines()
        raise UserError(f"{path}: weights do not fit this run's {arch!r} network (different sizes: "
                        f"{one_line(lines[1] if len(lines) > 1 else e, 100)}); "
                        f"use the matching config or a new run_dir") from None
    return md


def build_net(path: Path) -> tuple[nn.Module, dict]:
    """Rebuild a network from its file alone: kind, arch and config from the metadata, then the weights.
    The network is built on the meta device first, so a config asking for more memory than the
    machine has, or for tensor shapes other than the file's, is a one-line error before allocating."""
    from hifigan import budget
    from hifigan.schema import short as bounded_repr
    md, tensors = read_net(path)
    kind, arch = md.get("kind"), md.get("arch")
    reg = registry.by_kind(kind)
    if reg is None or arch not in reg.names():
        raise UserError(f"{path}: unknown network kind/arch {bounded_repr(kind, 40)}/{bounded_repr(arch, 40)} "
                        f"(written by a newer hifigan?)")
    try:
        cfg = reg.config(arch, json.loads(md.get("net_config", "")))
    except (ConfigError, ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError
        raise UserError(f"{path}: its network config does not fit this hifigan ({one_line(e, 200)})") from None
    cls = reg.get(arch)
    meta = budget.build_on_meta(cls, cfg)
    if meta is not None:
        budget.check(budget.describe(str(path), arch, cfg), budget.tensor_bytes(meta), "cpu",
                     "its config asks for a network this machine cannot hold; give a checkpoint of a smaller network")
        want = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
        have = {k: tuple(v.shape) for k, v in tensors.items()}
        bad = next((k for k in sorted(want.keys() | have.keys()) if want.get(k) != have.get(k)), None)
        if bad is not None:
            raise DamagedCheckpoint(f"{path}: tensor {bounded_repr(bad, 60)} is {have.get(bad, 'missing')} in the file "
                                    f"but {want.get(bad, 'absent')} for its own config; the file is damaged or edited")
    net = cls(cfg)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as e:
        raise DamagedCheckpoint(f"{path}: weights do not fit its own config ({one_line(e, 160)})") from None
    return net, md


STATE_KEYS = ("step", "nimg", "world_size", "optim", "scalers", "rng", "shared_rng", "config")


def load_state(ckpt: Path) -> dict:
    """A checkpoint's training state; missing, truncated, foreign or incomplete -> DamagedCheckpoint."""
    path = ckpt / "state.pt"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise DamagedCheckpoint(f"{path}: missing; the checkpoint is incomplete") from None
    if head[:2] != b"PK":  # torch.save writes a zip archive
        what = "empty (zero bytes)" if not head else "not a torch archive"
        raise DamagedCheckpoint(f"{path}: corrupt training state ({what}; truncated or overwritten)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DamagedCheckpoint(f"{path}: missing; the checkpoint is incomplete") from None
    except Exception as e:
        raise DamagedCheckpoint(f"{path}: corrupt or not a hifigan training state ({one_line(e, 120)})") from None
    if not isinstance(state, dict):
        raise DamagedCheckpoint(f"{path}: not a hifigan training state (holds a {type(state).__name__})")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise DamagedCheckpoint(f"{path}: damaged training state (missing {', '.join(missing)})")
    return state


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
        raise UserError(f"{file}: holds a {short(md.get('kind'))}, not a generator; give G_ema.safetensors or a run dir")
    bad = check_finite({"G": G})
    if bad:
        raise UserError(f"{file}: holds non-finite weights ({len(bad)} tensors, e.g. {bad[0]}): the run diverged "
                        f"before this checkpoint; use an earlier checkpoint (checkpoints/step-*)")
    return G.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval().requires_grad_(False)
