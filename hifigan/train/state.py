"""A trainer's checkpoint: every network's weights (hifigan/checkpoint.py writes and reads the files)
plus the training state an exact resume needs: each network handle's optimizer and loss-scaler
state, step, images seen, every rank's RNG states, the shared latent generator, the data position,
the objective's running statistics and the progressive stage.
"""
from __future__ import annotations

from pathlib import Path

from hifigan import checkpoint
from hifigan import config as config_mod
from hifigan.errors import UserError
from hifigan.registry import NETWORKS
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
    return checkpoint.latest(trainer.ckpt_root)


def save(trainer) -> None:
    b = trainer.backend
    trainer.standing_stats()
    files = _files(trainer)
    rng = b.gather_object(process.rng_state())
    digests = b.gather_object(checkpoint.digest({n: f[0] for n, f in files.items()}))
    data_state = b.gather_object(trainer.data.state_dict())
    if b.is_main:
        text = config_mod.dump(trainer.cfg)
        handles = {n: h.state_dict() for n, h in trainer.handles.items()}
        state = {
            "step": trainer.step, "nimg": trainer.nimg, "data_position": trainer.nimg, "world_size": b.world,
            "optim": {n: s["optim"] for n, s in handles.items()},
            "scalers": {n: s["scaler"] for n, s in handles.items()},
            "rng": rng, "shared_rng": trainer.rand.state(), "data": data_state, "config": text, "digests": digests,
            "objective": trainer.objective.state_dict(), "stage_index": trainer.stage_index,
        }
        meta = {"config": text, "step": trainer.step, "kimg": trainer.nimg / 1000}
        checkpoint.save(trainer.ckpt_root, trainer.step, files, state, meta, trainer.cfg.checkpoint.keep)
        if len(set(digests)) > 1:
            print(f"warning: ranks hold different weights at step {trainer.step} ({digests})")
    b.barrier()


def check_same_model(trainer, ckpt: Path | None = None) -> dict | None:
    """The state of the run dir's latest checkpoint (None when there is none), after checking it was
    trained with the same networks and objective as `trainer.cfg` (a one-line error otherwise)."""
    ckpt = ckpt or latest(trainer)
    if ckpt is None:
        return None
    state = checkpoint.load_state(ckpt)
    saved, now = config_mod.loads(state["config"]), config_mod.to_dict(trainer.cfg)
    if isinstance(saved.get("D"), dict):  # D keys of older versions that were off (their networks moved out)
        saved["D"] = {k: v for k, v in saved["D"].items() if not (k in LEGACY_D_KEYS and not v)}
    for key in (*NETWORKS, "objective"):
        if saved.get(key) != now.get(key):
            raise UserError(f"{ckpt}: this run dir was trained with a different {key} "
                            f"({saved.get(key)} vs {now.get(key)}); use a new run_dir or the original config")
    return state


def resume(trainer) -> bool:
    ckpt = latest(trainer)
    if ckpt is None:
        return False
    state = check_same_model(trainer, ckpt)
    for name, (net, _, arch) in _files(trainer).items():
        checkpoint.load_net_into(net, ckpt / f"{name}.safetensors", arch)
    for n, h in trainer.handles.items():
        if n not in state["optim"] or n not in state["scalers"]:
            raise UserError(f"{ckpt}: holds no optimizer state for network {n} (this recipe trains "
                            f"{', '.join(trainer.handles)}); use a new run_dir or the original config")
        h.load_state_dict({"optim": state["optim"][n], "scaler": state["scalers"][n]})
    trainer.step, trainer.nimg = int(state["step"]), int(state["nimg"])
    trainer.objective.load_state_dict(state.get("objective") or {}, trainer.backend.device)
    trainer.stage_index = state.get("stage_index")
    trainer.rand.set_state(state["shared_rng"])
    b = trainer.backend
    trainer.data.load_state_dict(state.get("data") or [], int(state["world_size"]))
    if len(state["rng"]) == b.world:
        process.set_rng_state(state["rng"][b.rank])
    elif b.is_main:
        print(f"warning: checkpoint written by {len(state['rng'])} ranks, resuming on {b.world}: "
              f"per-rank random streams restart (the run continues, but not bit for bit)")
    if b.is_main:
        print(f"resuming {ckpt} at step {trainer.step}, {trainer.nimg / 1000:.3f} kimg", flush=True)
    return True
