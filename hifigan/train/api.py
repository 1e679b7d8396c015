"""Library entry points behind launch/train.py."""
from __future__ import annotations

import sys
from pathlib import Path

from hifigan import config as config_mod
from hifigan.config import load_config
from hifigan.errors import UserError
from hifigan.models import count_params
from hifigan.train import state as run_state
from hifigan.train.trainer import Trainer


def describe(trainer: Trainer) -> str:
    """The resolved config and one parameter-count line per network (for --dry-run)."""
    lines = [config_mod.dump(trainer.cfg).rstrip()]
    lines += [f"{name}: {count_params(net):,} parameters" for name, net in trainer.nets.items()]
    lines.append(f"batch: {trainer.cfg.train.batch_size} global = {trainer.backend.world} ranks x "
                 f"{trainer.batch_gpu} x {trainer.accum} accumulation steps")
    lines.append("phases: " + ", ".join(f"{p.name} {list(p.nets)}" + (f" every {p.every}" if p.every > 1 else "")
                                         + (f" x{p.repeats}" if p.repeats > 1 else "") for p in trainer.phases))
    aug = trainer.objective.augment
    if aug is not None:
        how = "every image D sees"
        if getattr(aug, "adaptive", False):
            how += f"; p adaptive from {float(aug.p):g} towards r_t = {aug.cfg.target:g} ({aug.cfg.speed_kimg:g} kimg for 0 -> 1)"
        elif trainer.cfg.augment.name == "ada":
            how += f"; p fixed at {float(aug.p):g}"
        lines.append(f"augment: {trainer.cfg.augment.name} ({how})")
    return "\n".join(lines)


def train(config_path: str, overrides=(), dry_run: bool = False) -> dict | None:
    """Train the recipe (resuming its run dir), or with `dry_run` build and check everything a run
    would, print the resolved config and the parameter counts, and write nothing."""
    cfg = load_config(config_path, overrides)
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run_dir {run_dir}: exists and is not a folder; choose another run_dir")
    trainer = Trainer(cfg, dry_run=dry_run)
    if dry_run:
        run_state.check_same_model(trainer)  # a run dir of another model fails here as a real run would
        if trainer.backend.is_main:
            print(describe(trainer))
            if trainer.data_problem:
                print(f"warning: the data is not available, so a real run would stop here: {trainer.data_problem}",
                      file=sys.stderr)
            if trainer.files_problem:
                print(f"warning: a file the objective needs is not available, so a real run would stop here: "
                      f"{trainer.files_problem}", file=sys.stderr)
        return None
    result = trainer.run()
    trainer.backend.close()
    return result
