"""A trainer's checkpoint: every network's weights (hifigan/checkpoint.py writes and reads the files)
plus the training state an exact resume needs: each network handle's optimizer and loss-scaler
state, step, images seen, every rank's RNG states, the shared latent generator, the data position,
the objective's running statistics and the progressive stage.

A checkpoint written by launch/convert.py (state["converted_from"]) holds weights only: resuming from
it compares the networks' configs (not the objective, which never ran), starts every optimizer and
random stream fresh from the recipe and its seed, and prints a note saying so.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hifigan import checkpoint
from hifigan import config as config_mod
from hifigan.errors import UserError
from hifigan.registry import NETWORKS
from hifigan.schema import short
from hifigan.train import process

LEGACY_D_KEYS = ("q_cat", "q_cont", "q_separate", "classifier_classes")  # Q and C are networks of their own now


def _files(trainer) -> dict:
    """file name -> (module, kind, arch) for every network and G_ema; kind and arch from the registry."""
    out = {}
    for name, net in {**trainer.nets, "G_ema": trainer.G_ema}.items():
        section = "G" if name == "G_ema" else name
        out[name] = (net, NETWORKS[section].kind, getattr(trainer.cfg, section).name)
    return out


def latest(trainer) -> Path | None:
    return checkpoint.latest(trainer.ckpt_root, warn=trainer.monitor.warn)


class NonFinite(UserError):
    """Training produced non-finite weights or too many non-finite steps in a row."""


def diverged(trainer, what: str) -> NonFinite:
    """The one-line error that stops a diverged run: `what` happened, nothing was saved, and which
    checkpoint stays latest."""
    prev = checkpoint.latest(trainer.ckpt_root, warn=lambda _: None) if trainer.ckpt_root.exists() else None
    return NonFinite(f"training diverged: {what} at step {trainer.step} ({trainer.nimg / 1000:.3f} kimg), so the "
                     f"run stopped without saving; {prev.name + ' is still latest' if prev else 'no checkpoint exists'}; "
                     f"lower the learning rates (optim.*.lr) or set optim.*.grad_clip, then rerun to resume")


def save(trainer) -> None:
    """Write a checkpoint of every rank's state (rank 0 writes), unless a weight is non-finite: then
    nothing is written, `latest` keeps naming the newest finite checkpoint, and NonFinite stops the run."""
    b = trainer.backend
    trainer.standing_stats()
    with contextlib.ExitStack() as whole:  # ZeRO-3 networks gathered while their weights are checked and written
        for net in trainer.nets.values():
            whole.enter_context(b.full_weights(net))
        _save(trainer)
    b.barrier()


def _save(trainer) -> None:
    b = trainer.backend
    files = _files(trainer)
    bad = checkpoint.check_finite({n: f[0] for n, f in files.items()})
    if b.any(bool(bad)):
        raise diverged(trainer, f"non-finite weights (e.g. {bad[0] if bad else 'on another rank'})")
    rng = b.gather_object(process.rng_state())
    digests = b.gather_object(checkpoint.digest({n: f[0] for n, f in files.items()}))
    ema_digests = b.gather_object(checkpoint.digest({"G_ema": trainer.G_ema}))  # every rank's (node's) G_ema
    data_state = b.gather_object(trainer.data.state_dict())
    handles = {n: h.state_dict() for n, h in trainer.handles.items()}  # every rank: ZeRO gathers partitions
    failure = None
    if b.is_main:
        text = config_mod.dump(trainer.cfg)
        state = {
            "step": trainer.step, "nimg": trainer.nimg, "data_position": trainer.nimg, "world_size": b.world,
            "optim": {n: s["optim"] for n, s in handles.items()},
            "scalers": {n: s["scaler"] for n, s in handles.items()},
            "rng": rng, "shared_rng": trainer.rand.state(), "data": data_state, "config": text, "digests": digests,
            "ema_digests": ema_digests,
            "objective": trainer.objective.state_dict(), "stage_index": trainer.stage_index,
            "nonfinite_steps": trainer.nonfinite_total,
        }
        meta = {"config": text, "step": trainer.step, "kimg": trainer.nimg / 1000}
        try:
            checkpoint.save(trainer.ckpt_root, trainer.step, files, state, meta, trainer.cfg.checkpoint.keep)
        except UserError as e:
            failure = e
        if failure is None and len(set(digests)) > 1:
            print(f"warning: ranks hold different weights at step {trainer.step} ({digests})")
    if b.any(failure is not None):  # every rank stops together
        raise failure or UserError(f"rank {b.rank}: the main process could not write checkpoint "
                                   f"step {trainer.step} (see its error)")


def check_same_model(trainer, ckpt: Path | None = None) -> dict | None:
    """The state of the run dir's latest checkpoint (None when there is none), after checking it was
    trained with the same networks and objective as `trainer.cfg` (a one-line error otherwise)."""
    ckpt = ckpt or latest(trainer)
    if ckpt is None:
        return None
    state = checkpoint.load_state(ckpt)
    try:
        saved = config_mod.loads(state["config"])
    except Exception:
        saved = None
    if not isinstance(saved, dict):
        raise checkpoint.DamagedCheckpoint(f"{ckpt / 'state.pt'}: damaged training state (its config is unreadable)")
    now = config_mod.to_dict(trainer.cfg)
    converted = state.get("converted_from")
    lacking = [n for n in NETWORKS if converted and now.get(n) is not None and n not in state.get("nets", ())]
    if lacking:
        raise UserError(f"{ckpt}: converted from {short(converted)} without network {lacking[0]}, which this recipe "
                        f"trains; convert a checkpoint that holds it (a training snapshot) or use a new run_dir")
    if isinstance(saved.get("D"), dict):  # D keys of older versions that were off (their networks moved out)
        saved["D"] = {k: v for k, v in saved["D"].items() if not (k in LEGACY_D_KEYS and not v)}
    for key in (*NETWORKS, *(() if state.get("converted_from") else ("objective",))):
        if saved.get(key) != now.get(key):
            raise UserError(f"{ckpt}: this run dir was trained with a different {key} "
                            f"({short(saved.get(key), 200)} vs {short(now.get(key), 200)}); use a new run_dir or "
                            f"the original config")
    return state


def _read(trainer, ckpt: Path) -> tuple[dict, dict]:
    """Everything a resume loads from `ckpt`, read and checked before any of it is applied:
    (state, {file name: tensors}). Damage -> checkpoint.DamagedCheckpoint; another model -> UserError."""
    state = check_same_model(trainer, ckpt)
    tensors = {}
    for name, (_, _, arch) in _files(trainer).items():
        md, t = checkpoint.read_net(ckpt / f"{name}.safetensors")
        bad = checkpoint.nonfinite(t)
        if bad:
            raise checkpoint.DamagedCheckpoint(f"{ckpt / name}.safetensors: holds non-finite weights ({bad[0]})")
        tensors[name] = t
    return state, tensors


def _find(trainer) -> tuple[Path, dict, dict] | None:
    """The newest loadable checkpoint, newest first from the one `latest` names: a damaged one is
    moved aside to `damaged-step-N` (nothing is deleted) with a warning, and the next older one tried."""
    root, warn = trainer.ckpt_root, trainer.monitor.warn
    first = latest(trainer)
    if first is None:
        return None
    candidates = [first] + [p for p in reversed(checkpoint.complete(root)) if p.name < first.name]
    damaged = []
    for ckpt in candidates:
        try:
            state, tensors = _read(trainer, ckpt)
        except checkpoint.DamagedCheckpoint as e:
            damaged.append((ckpt, e))
            continue
        trainer.backend.barrier()  # every rank has read what it needs before the main process moves anything
        if trainer.backend.is_main:
            for bad, e in damaged:
                aside = root / f"damaged-{bad.name}"
                if not aside.exists():
                    os.replace(bad, aside)
                warn(f"warning: {e}; moved it to {aside.name} and resumed from {ckpt.name}")
        return ckpt, state, tensors
    raise UserError(f"{root}: no loadable checkpoint ({damaged[0][1]}); move the checkpoints folder away to "
                    f"start over, or use a new run_dir")


def _optim_changes(trainer, state: dict) -> list[str]:
    """Optimizer settings the recipe changed since the checkpoint: applied after the optimizer state is
    loaded (the state would otherwise bring back the old ones), or refused when they cannot carry over."""
    saved = (config_mod.loads(state["config"]) or {}).get("optim") or {}
    now = config_mod.to_dict(trainer.cfg).get("optim") or {}
    changes = []
    for net in sorted(trainer.handles):
        old, new = saved.get(net) or {}, now.get(net) or {}
        if old.get("name", new.get("name")) != new.get("name"):
            raise UserError(f"optim.{net}.name: this run dir was trained with {short(old.get('name'))}, and its "
                            f"state cannot carry over to {new.get('name')!r}; keep {short(old.get('name'))} or "
                            f"use a new run_dir")
        changes += [f"optim.{net}.{k}: {short(old.get(k))} -> {short(new.get(k))}"
                    for k in sorted(new) if k in old and old[k] != new[k]]
    return changes


def resume(trainer) -> bool:
    found = _find(trainer)
    if found is None:
        return False
    ckpt, state, tensors = found
    changes = _optim_changes(trainer, state)
    for name, (net, _, arch) in _files(trainer).items():
        try:
            trainer.backend.load_weights(net, tensors[name])  # ZeRO: its partitions and master copy
        except RuntimeError as e:
            raise UserError(f"{ckpt / name}.safetensors: weights do not fit this run's {arch!r} network "
                            f"({checkpoint.one_line(e, 100)}); use the matching config or a new run_dir") from None
    converted = state.get("converted_from")
    for n, h in trainer.handles.items():
        if converted and n not in state["optim"]:
            continue  # fresh optimizer (the note below)
        if n not in state["optim"] or n not in state["scalers"]:
            raise UserError(f"{ckpt}: holds no optimizer state for network {n} (this recipe trains "
                            f"{', '.join(trainer.handles)}); use a new run_dir or the original config")
        h.load_state_dict({"optim": state["optim"][n], "scaler": state["scalers"][n]})
        h.apply_settings()
    trainer.step, trainer.nimg = int(state["step"]), int(state["nimg"])
    trainer.nonfinite_total = int(state.get("nonfinite_steps", 0))
    trainer.objective.load_state_dict(state.get("objective") or {}, trainer.backend.device)
    trainer.stage_index = state.get("stage_index")
    b = trainer.backend
    if not converted:
        trainer.rand.set_state(state["shared_rng"])
    trainer.data.load_state_dict(state.get("data") or [], int(state["world_size"]))
    if converted:
        pass  # the streams the trainer seeded from the recipe stay
    elif len(state["rng"]) == b.world:
        process.set_rng_state(state["rng"][b.rank])
    elif b.is_main:
        print(f"warning: checkpoint written by {len(state['rng'])} ranks, resuming on {b.world}: "
              f"per-rank random streams restart (the run continues, but not bit for bit)")
    if b.is_main:
        print(f"resuming {ckpt} at step {trainer.step}, {trainer.nimg / 1000:.3f} kimg", flush=True)
        if converted:
            fresh = [n for n in trainer.handles if n not in state["optim"]]
            print(f"resume: {ckpt} was converted from {short(converted)} and holds no optimizer state; "
                  f"{', '.join(fresh) or 'no network'} start{'s' if len(fresh) == 1 else ''} with fresh optimizers "
                  f"and the recipe's seed", flush=True)
        for c in changes:
            print(f"resume: {c} (changed in the recipe; applied)", flush=True)
    return True
