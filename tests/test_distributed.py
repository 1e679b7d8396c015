"""Two CPU processes (gloo): the split of a global batch over ranks and accumulation steps changes nothing."""
import subprocess

import pytest
import torch

from conftest import ROOT, env1, kill_run, latest_ckpt, read_weights, run_script, tiny_overrides, torchrun_cmd


def torchrun(nproc, *args, timeout=600):
    r = subprocess.run(torchrun_cmd(nproc, "train.py", *args), cwd=ROOT, env=env1(), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _close(a, b, atol):
    for net in ("G", "D", "G_ema"):
        wa, wb = read_weights(latest_ckpt(a) / f"{net}.safetensors"), read_weights(latest_ckpt(b) / f"{net}.safetensors")
        for k in wa:
            assert torch.allclose(wa[k], wb[k], atol=atol, rtol=0), f"{net}.{k}: {(wa[k] - wb[k]).abs().max()}"


def _mlp_args(run, **extra):
    # B = 16 per rank, global 32; no batch norm, no dropout: the per-sample math is split-independent
    return [ROOT / "configs/mnist_gan.yaml",
            *tiny_overrides(run, arch="mlp", **{"train.batch_size": 32, "train.total_kimg": 0.032, **extra})]


def test_one_step_two_ranks_x_b_equals_one_rank_x_2b(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_script("train.py", *_mlp_args(one))
    torchrun(2, *_mlp_args(two))
    assert torch.load(latest_ckpt(two) / "state.pt", weights_only=True)["world_size"] == 2
    assert latest_ckpt(one).name == latest_ckpt(two).name == "step-00000001"
    init = read_weights(latest_ckpt(one) / "G.safetensors")
    _close(one, two, atol=1e-6)
    # and the step did something: G moved away from its seed-determined initialisation
    fresh = tmp_path / "fresh"
    run_script("train.py", *_mlp_args(fresh, **{"optim.G.lr": 0.0}))
    assert not torch.equal(init["net.0.weight"], read_weights(latest_ckpt(fresh) / "G.safetensors")["net.0.weight"])


def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    full, accum = tmp_path / "full", tmp_path / "accum"
    run_script("train.py", *_mlp_args(full, **{"train.total_kimg": 0.096}))
    run_script("train.py", *_mlp_args(accum, **{"train.total_kimg": 0.096, "train.batch_gpu": 8}))  # 4 micro-steps
    _close(full, accum, atol=1e-5)


def test_two_ranks_hold_identical_weights_at_every_checkpoint(tmp_path):
    run = tmp_path / "ddp"
    torchrun(2, ROOT / "configs/mnist_dcgan.yaml",  # DCGAN: batch norm buffers included
             *tiny_overrides(run, **{"train.batch_size": 32, "train.total_kimg": 0.64,
                                     "checkpoint.every_kimg": 0.16, "checkpoint.keep": 10}))
    states = sorted((run / "checkpoints").glob("step-*/state.pt"))
    assert len(states) == 4
    for p in states:
        s = torch.load(p, weights_only=True)
        assert s["world_size"] == 2 and len(s["rng"]) == 2
        assert len(s["digests"]) == 2 and s["digests"][0] == s["digests"][1], p
        assert not torch.equal(s["rng"][0]["torch"], s["rng"][1]["torch"])  # ranks have their own streams


def test_kill_9_on_two_ranks_then_rerun_gives_bit_identical_weights(tmp_path):
    import time
    ref, run = tmp_path / "ref", tmp_path / "killed"

    def args(r):
        return [ROOT / "configs/mnist_dcgan.yaml",
                *tiny_overrides(r, **{"train.batch_size": 32, "train.total_kimg": 3.2, "checkpoint.every_kimg": 0.32})]
    torchrun(2, *args(ref))
    proc = subprocess.Popen(torchrun_cmd(2, "train.py", *args(run)), cwd=ROOT, env=env1(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (run / "checkpoints" / "latest").exists():
        assert proc.poll() is None and time.time() - t0 < 300
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the run finished before the kill"
    kill_run(run)
    proc.wait()
    torchrun(2, *args(run))
    for net in ("G_ema", "G", "D"):
        wa, wb = (read_weights(latest_ckpt(r) / f"{net}.safetensors") for r in (ref, run))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), net
