"""The StyleGAN2 trainer through the fused ops: train.kernels=triton (the CPU interpreter here, the
compiled kernels on a GPU) follows train.kernels=reference step for step."""
from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from hifigan.config import load_config
from hifigan.kernels import dispatch
from hifigan.train.trainer import Trainer
from conftest import ROOT
from test_recipes import shrink

pytest.importorskip("triton")


def _losses(tmp_path, impl: str, steps: int) -> tuple[dict, dict]:
    o = shrink("stylegan2_mnist.yaml", tmp_path / impl) + [f"train.kernels={impl}", "G.channel_max=8",
                                                              "D.channel_max=8", "train.batch_size=4"]
    tr = Trainer(load_config(ROOT / "configs" / "stylegan2_mnist.yaml", o))
    seen = defaultdict(list)
    add = tr.stats.add
    tr.stats.add = lambda name, v: (seen[name].append(float(v)), add(name, v))
    try:
        for _ in range(steps):
            tr.train_step()  # step 0 runs every phase: Gmain, Greg (path length), Dmain, Dreg (R1)
    finally:
        dispatch.set_default_impl("auto")
    weights = {f"{n}.{k}": v.detach().clone() for n in ("G", "D") for k, v in tr.nets[n].state_dict().items()}
    return {k: v for k, v in seen.items() if k.startswith("Loss/")}, weights


def test_triton_training_steps_follow_the_reference(tmp_path):
    torch.set_num_threads(1)
    ref, ref_w = _losses(tmp_path, "reference", 1)
    fast, fast_w = _losses(tmp_path, "triton", 1)
    assert set(ref) == set(fast) and {"Loss/Greg/total", "Loss/Dreg/total"} <= set(ref)
    for name in ref:
        for a, b in zip(fast[name], ref[name]):
            assert abs(a - b) <= 1e-4 * (1 + abs(b)), f"{name}: triton {a} vs reference {b}"
    for k in ref_w:  # the updates (Adam normalizes gradients: a wrong gradient sign shows at lr scale)
        torch.testing.assert_close(fast_w[k], ref_w[k], rtol=1e-4, atol=1e-5, msg=k)


def test_kernels_that_cannot_run_here_stop_the_trainer_with_one_line(tmp_path):
    from conftest import run_script
    r = run_script("train.py", ROOT / "configs" / "stylegan2_mnist.yaml",
                   *shrink("stylegan2_mnist.yaml", tmp_path / "run"), "train.kernels=cuda", check=False)
    assert r.returncode == 2 and "train.kernels" in r.stderr and "Traceback" not in r.stderr, r.stderr
