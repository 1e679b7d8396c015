"""Library entry points behind launch/train.py."""
from __future__ import annotations

from hifigan.config import load_config
from hifigan.train.trainer import Trainer, describe


def train(config_path: str, overrides=(), dry_run: bool = False) -> dict | None:
    cfg = load_config(config_path, overrides)
    trainer = Trainer(cfg)
    if dry_run:
        if trainer.backend.is_main:
            print(describe(trainer))
        return None
    result = trainer.run()
    trainer.backend.close()
    return result
