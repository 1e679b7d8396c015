"""Official StyleGAN2 checkpoints -> a hifigan run directory (launch/convert.py).

    from hifigan.convert import convert
    convert("network-snapshot-025000.pkl", "runs/ffhq-converted")   # NVIDIA stylegan2-ada-pytorch / stylegan3
    convert("550000.pt", "runs/ffhq-rosinality")                    # rosinality/stylegan2-pytorch

The output is what training writes, so everything that reads a run dir reads it:
    OUT/config.yaml                       a recipe with the converted G and D (set data.shards to train)
    OUT/checkpoints/latest                -> step-00000000
    OUT/checkpoints/step-00000000/        G, G_ema, D .safetensors + state.pt without optimizer state
`load_generator(OUT)` and launch/generate.py use G_ema; `launch/train.py OUT/config.yaml run_dir=OUT`
resumes with fresh optimizers (a printed note says so).

Safety: nothing in a source file is run. NVIDIA pickles go through a restricted unpickler
(convert/unpickle.py) whose globals are a fixed table of stand-ins, so the Python source they embed
is never compiled; rosinality files through torch.load(weights_only=True). Every failure (missing,
empty, damaged, a folder, another architecture, an existing non-empty OUT without force) is one
UserError line, and OUT appears whole or not at all (built in a hidden temporary folder beside it,
then renamed).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from hifigan import checkpoint, io
from hifigan import config as config_mod
from hifigan.convert import nvidia, rosinality
from hifigan.convert.common import ARCH, Converted, build, fit
from hifigan.errors import UserError, one_line

__all__ = ["convert", "read", "Converted"]

PICKLE_MAGIC = b"\x80"        # a pickle with protocol >= 2 starts with PROTO
ZIP_MAGIC = b"PK\x03\x04"     # torch.save's archive

# the recipe written beside the checkpoint: StyleGAN2-ADA's defaults (paper appendix D); edit to taste
RECIPE = {
    "seed": 0,
    "objective": {"name": "stylegan", "r1_gamma": 10, "pl_weight": 2, "pl_decay": 0.01, "pl_batch_shrink": 2,
                  "style_mixing": 0.9},
    "phases": [{"name": "Gmain", "nets": ["G"]}, {"name": "Greg", "nets": ["G"], "every": 4},
               {"name": "Dmain", "nets": ["D"]}, {"name": "Dreg", "nets": ["D"], "every": 16}],
    "optim": {n: {"name": "adam", "lr": 0.0025, "betas": [0.0, 0.99], "eps": 1e-8} for n in ("G", "D")},
    "train": {"batch_size": 32, "ema_kimg": 10, "deterministic": False},
    "checkpoint": {"every_kimg": 200, "keep": 5},
}


def _check_source(src: Path) -> bytes:
    if not src.exists():
        raise UserError(f"{src}: no such file; give a network-snapshot .pkl or a rosinality .pt checkpoint")
    if src.is_dir():
        raise UserError(f"{src}: is a folder; give a network-snapshot .pkl or a rosinality .pt file")
    with open(src, "rb") as f:
        head = f.read(4)
    if not head:
        raise UserError(f"{src}: empty (zero bytes); the file is truncated, download or copy it again")
    return head


def _check_out(out: Path, force: bool) -> None:
    if out.is_file() or out.is_symlink():
        raise UserError(f"{out}: exists and is not a folder; give a new --out folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out}: exists and is not empty; give a new --out folder, or --force to replace it")


def read(src) -> Converted:
    """Read and convert `src` in memory (no files written)."""
    src = Path(src).expanduser()
    head = _check_source(src)
    if head.startswith(ZIP_MAGIC):
        return rosinality.convert(src)
    if head.startswith(PICKLE_MAGIC):
        return nvidia.convert(src)
    raise UserError(f"{src}: neither a pickle nor a torch checkpoint (starts with {head!r}); give a "
                    f"network-snapshot .pkl (stylegan2-ada-pytorch / stylegan3) or a rosinality .pt")


def networks(conv: Converted) -> dict:
    """file name -> (module, kind, arch) of our networks, loaded with the converted tensors."""
    nets = {}
    for name in ("G", "G_ema", "D"):
        if name not in conv.tensors:
            continue
        kind = "D" if name == "D" else "G"
        net = build(kind, conv.D if kind == "D" else conv.G, conv.source)
        fit(net, conv.tensors[name], conv.source, name)
        nets[name] = (net.eval().requires_grad_(False), "discriminator" if kind == "D" else "generator", ARCH)
    return nets


def recipe(conv: Converted) -> str:
    """config.yaml for resuming: the converted G and D in StyleGAN2-ADA's training defaults."""
    tree = {**RECIPE, "G": {"arch": ARCH, **conv.G}, "D": {"arch": ARCH, **conv.D} if conv.D else None,
            "data": {"resolution": conv.G["resolution"], "xflip": True}}
    try:
        cfg = config_mod.load_config(None, mapping=tree)
    except UserError as e:
        raise UserError(f"{conv.source}: its settings do not make a hifigan recipe ({one_line(e, 200)})") from None
    return config_mod.dump(cfg)


def _write(conv: Converted, nets: dict, root: Path, out: Path) -> None:
    text = recipe(conv)
    origin = f"{conv.fmt}:{Path(conv.source).name}"
    state = {"step": 0, "nimg": 0, "world_size": 1, "optim": {}, "scalers": {}, "rng": [], "shared_rng": None,
             "config": text, "data": [], "objective": {}, "stage_index": None, "nonfinite_steps": 0,
             "converted_from": origin, "nets": sorted(nets)}
    header = (f"# converted from {origin} by launch/convert.py; to continue training set data.shards and run\n"
              f"#   python launch/train.py {out}/config.yaml run_dir={out} data.shards=...\n")
    io.atomic_write(root / "config.yaml", lambda p: Path(p).write_text(header + text))
    checkpoint.save(root / "checkpoints", 0, nets, state, {"config": text, "step": 0, "kimg": 0.0,
                                                            "converted_from": origin}, keep=1)


def convert(src, out, force: bool = False) -> Path:
    """Convert checkpoint `src` into the run directory `out` (see the module docstring); returns `out`."""
    out = Path(out).expanduser()
    _check_out(out, force)
    conv = read(src)
    with torch.no_grad():
        nets = networks(conv)
    tmp = out.parent / f".{out.name}.convert{os.getpid()}.tmp"
    old = out.parent / f".{out.name}.old{os.getpid()}.tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write(conv, nets, tmp, out)
        _check_out(out, force)  # again: something may have appeared meanwhile
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    G = nets["G_ema"][0]
    print(f"converted {conv.fmt} {src} -> {out}: G {G.cfg.resolution}x{G.cfg.resolution}, z {G.cfg.z_dim}, "
          f"{G.num_classes or 'no'} classes; {', '.join(sorted(nets))}", flush=True)
    for note in conv.notes:
        print(f"note: {note}", flush=True)
    return out
