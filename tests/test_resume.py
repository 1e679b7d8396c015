"""Exact resume: kill -9 at any moment, rerun the command, get the uninterrupted run's weights bit for bit."""
import os
import random
import signal
import subprocess
import time

import torch

from conftest import PY, ROOT, env1, latest_ckpt, read_weights, run_script, tiny_overrides

STEPS = 120  # batch 16 -> 1.92 kimg


def _args(run):
    return [str(ROOT / "launch/train.py"), str(ROOT / "configs/mnist_dcgan.yaml"),
            *tiny_overrides(run, **{"train.total_kimg": STEPS * 16 / 1000, "checkpoint.every_kimg": 0.24,
                                    "log.every_kimg": 0.16, "log.image_every_kimg": 0.8, "train.ema_kimg": 0.1})]


def _assert_same_final_weights(a, b):
    ca, cb = latest_ckpt(a), latest_ckpt(b)
    assert ca.name == cb.name == f"step-{STEPS:08d}"
    for net in ("G_ema", "G", "D"):
        wa, wb = read_weights(ca / f"{net}.safetensors"), read_weights(cb / f"{net}.safetensors")
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{net}.{k} differs"


def _step(run) -> int:
    ptr = run / "checkpoints" / "latest"
    return int(ptr.read_text().split("-")[1]) if ptr.exists() else -1


def _wait_for_checkpoint(run, proc, after: int = -1, timeout=120):
    """Wait until the run has written a checkpoint newer than step `after`."""
    t0 = time.time()
    while _step(run) <= after:
        assert proc.poll() is None, "training ended before the checkpoint"
        assert time.time() - t0 < timeout
        time.sleep(0.02)


def test_kill_9_then_rerun_gives_bit_identical_weights(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "killed"
    subprocess.run([PY, *_args(ref)], env=env1(), check=True, capture_output=True, timeout=600)
    rng = random.Random(1234)
    for attempt in range(2):  # two kills at random moments mid-run (possibly inside a checkpoint write)
        before = _step(run)
        proc = subprocess.Popen([PY, *_args(run)], env=env1(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_checkpoint(run, proc, after=before)
        time.sleep(rng.uniform(0.0, 0.4))
        assert proc.poll() is None, "the run finished before the kill; make it longer"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _step(run) < STEPS
    r = subprocess.run([PY, *_args(run)], env=env1(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    _assert_same_final_weights(ref, run)


def test_sigterm_writes_a_checkpoint_and_exits_0_then_resume_matches(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "term"
    subprocess.run([PY, *_args(ref)], env=env1(), check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen([PY, *_args(run)], env=env1(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(run, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    if "stopped by signal" in out:  # it may have finished first on a fast machine
        step = int(latest_ckpt(run).name.split("-")[1])
        assert 0 < step < STEPS and f"step {step}" in out  # the checkpoint is at the step where it stopped
    r = subprocess.run([PY, *_args(run)], env=env1(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    _assert_same_final_weights(ref, run)


def test_finished_run_rerun_is_a_no_op(tmp_path):
    run = tmp_path / "done"
    args = tiny_overrides(run, **{"train.total_kimg": 0.032})
    run_script("train.py", ROOT / "configs/mnist_dcgan.yaml", *args)
    before = latest_ckpt(run)
    r = run_script("train.py", ROOT / "configs/mnist_dcgan.yaml", *args)
    assert "already trained" in r.stdout and latest_ckpt(run) == before
