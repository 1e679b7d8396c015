"""Mixed precision goes through Accelerate's autocast; each network has its own GradScaler state."""
import math

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, latest_ckpt, run_script, tiny_overrides


def _losses(run):
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars("Loss/Dmain/total")]


def test_bf16_autocast_changes_the_numbers_but_trains(tmp_path):
    runs = {}
    for mp in ("no", "bf16"):
        runs[mp] = tmp_path / mp
        run_script("train.py", ROOT / "configs/mnist_dcgan.yaml",
                   *tiny_overrides(runs[mp], **{"train.mixed_precision": mp, "train.total_kimg": 0.16,
                                                "log.every_kimg": 0.08}))
    fp32, bf16 = _losses(runs["no"]), _losses(runs["bf16"])
    assert all(math.isfinite(v) for v in bf16)
    assert fp32 != bf16  # autocast really ran in bf16
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.1  # ... and stayed close to fp32


def test_fp16_keeps_one_scaler_per_network(tmp_path):
    run = tmp_path / "fp16"
    r = run_script("train.py", ROOT / "configs/mnist_dcgan.yaml",
                   *tiny_overrides(run, **{"train.mixed_precision": "fp16", "train.total_kimg": 0.032}))
    state = torch.load(latest_ckpt(run) / "state.pt", weights_only=True)
    assert set(state["scalers"]) == {"G", "D"}
    if not torch.cuda.is_available():  # Accelerate has no fp16 autocast on CPU: it says so and runs fp32
        assert "no fp16 autocast on cpu" in r.stdout
