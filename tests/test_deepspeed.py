"""The deepspeed backend on two CPU processes (gloo): ZeRO 1-3 against DDP, exact resume, the deepspeed and
accelerate launchers, two "nodes" over loopback, fp16 overflow handling, and its one-line refusals.

Tolerance of "ZeRO matches DDP": both average the same gradients over the same two ranks, so stages 1
and 2 (which all-reduce / reduce the whole gradient as DDP does) agree to 1e-6 absolute after 10 steps
(they are bit-identical on this machine today); stage 3 reduce-scatters per parameter partition, a
different summation order, so 1e-4 after 10 steps of Adam.
"""
import os
import re
import shutil
import subprocess
import time

import pytest
import torch

from conftest import PY, ROOT, env1, free_port, kill_run, latest_ckpt, read_weights, run_script, torchrun_cmd
from test_recipes import shrink

pytest.importorskip("deepspeed")

TOL = {1: 1e-6, 2: 1e-6, 3: 1e-4}
RECIPES = {"dcgan": ("mnist_dcgan.yaml", ["train.batch_size=16", "train.total_kimg=0.16"]),  # 10 steps
           # 10 steps at batch 8: path length (every 4) at steps 0, 4, 8 and lazy R1 (every 16) at step 0
           "stylegan2": ("stylegan2_mnist.yaml", ["train.total_kimg=0.08"])}


def ds(stage: int) -> list[str]:
    return ["backend.name=deepspeed", f"backend.zero_stage={stage}"]


def args(recipe: str, run, *extra) -> list:
    name, o = RECIPES[recipe]
    return [ROOT / "configs" / name, *shrink(name, run), *o, *extra]


def launch(cmd, check=True, timeout=600, env=None):
    r = subprocess.run(list(map(str, cmd)), cwd=ROOT, env=env or env1(), capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def torchrun(*a, **kw):
    return launch(torchrun_cmd(2, "train.py", *a), **kw)


def nets_of(run) -> dict:
    ck = latest_ckpt(run)
    return {p.stem: read_weights(p) for p in ck.glob("*.safetensors")}


def max_diff(a, b) -> dict:
    wa, wb = nets_of(a), nets_of(b)
    assert set(wa) == set(wb)
    return {n: max(float((wa[n][k] - wb[n][k]).abs().max()) for k in wa[n]) for n in wa}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two-process runs, made once per (recipe, backend) and shared by the tests."""
    root, made = tmp_path_factory.mktemp("ds"), {}

    def get(recipe: str, stage):  # stage None: DDP (the accelerate backend)
        key = (recipe, stage)
        if key not in made:
            run = root / f"{recipe}-{stage}"
            torchrun(*args(recipe, run, *(ds(stage) if stage is not None else [])))
            made[key] = run
        return made[key]
    return get


@pytest.mark.parametrize("recipe", ["dcgan", "stylegan2"])
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_stage_trains_two_ranks_like_ddp(runs, recipe, stage):
    ddp, zero = runs(recipe, None), runs(recipe, stage)
    assert latest_ckpt(zero).name == latest_ckpt(ddp).name == "step-00000010"
    s = torch.load(latest_ckpt(zero) / "state.pt", weights_only=True)  # loads without unpickling DeepSpeed objects
    assert s["world_size"] == 2 and s["digests"][0] == s["digests"][1]
    for net in ("G", "D"):
        assert s["optim"][net]["zero_stage"] == stage and len(s["optim"][net]["partitions"]) == 2
    diff = max_diff(ddp, zero)
    assert all(d <= TOL[stage] for d in diff.values()), diff
    # and training moved the weights: the comparison is not between two untouched initialisations
    init = torch.load(latest_ckpt(zero) / "state.pt", weights_only=True)["nimg"]
    assert init == 160 if recipe == "dcgan" else init == 80


def test_zero2_with_offload_accumulation_and_clipping_trains_like_ddp(tmp_path):
    """Gradient accumulation (2 micro-steps of 4 per rank), gradient clipping and the optimizer offloaded to the
    CPU (ZeRO-Offload's own code path): still DDP's training. ZeRO-2 reduces in every micro-step and DDP once,
    and the clip norms are summed in another order: 1e-5 (7.5e-7 measured; with 4 micro-steps of 2 Adam
    carries such differences to 8e-5 in 10 steps)."""
    extra = ("train.batch_gpu=4", "optim.G.grad_clip=0.05", "optim.D.grad_clip=0.05")
    ddp, zero = tmp_path / "ddp", tmp_path / "zero"
    torchrun(*args("dcgan", ddp, *extra))
    torchrun(*args("dcgan", zero, *ds(2), "backend.offload=true", *extra))
    diff = max_diff(ddp, zero)
    assert all(d <= 1e-5 for d in diff.values()), diff


def test_zero3_resume_continues_bit_for_bit(runs, tmp_path):
    """Stopped after 5 steps and rerun to 10: the same weights as 10 steps in one go (ZeRO-3 partitions of
    the optimizer states and of the weights are written and read back exactly)."""
    full = runs("stylegan2", 3)
    run = tmp_path / "resumed"
    torchrun(*args("stylegan2", run, *ds(3)), "train.total_kimg=0.04")
    assert latest_ckpt(run).name == "step-00000005"
    r = torchrun(*args("stylegan2", run, *ds(3)))
    assert "resuming" in r.stdout
    assert all(d == 0.0 for d in max_diff(full, run).values()), max_diff(full, run)


def test_deepspeed_launcher_kill_9_rerun_continues_and_generate_reads_the_weights(tmp_path):
    """The README's `deepspeed` line on two CPU processes; killed hard after its first checkpoint, the same
    command continues from it; generate.py reads the exported G_ema."""
    run = tmp_path / "run"
    cmd = [shutil.which("deepspeed") or "deepspeed", "--num_gpus", "2", "--master_port", free_port(),
           ROOT / "launch/train.py", *args("dcgan", run, *ds(2)), "train.total_kimg=1.6", "checkpoint.every_kimg=0.16"]
    proc = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, env=env1(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (run / "checkpoints" / "latest").exists():
        assert proc.poll() is None and time.time() - t0 < 300, "no checkpoint before the run ended"
        time.sleep(0.05)
    kill_run(run)
    proc.wait()
    first = latest_ckpt(run).name
    cmd[4] = free_port()
    r = launch(cmd)
    assert f"resuming {run / 'checkpoints' / first}" in r.stdout
    assert latest_ckpt(run).name == "step-00000100"
    run_script("generate.py", run, "--seeds", "0-3", "--out", tmp_path / "samples")
    assert len(list((tmp_path / "samples").glob("*.png"))) >= 4


def test_accelerate_launch_use_deepspeed_selects_the_deepspeed_backend(tmp_path):
    run = tmp_path / "run"
    env = dict(env1(), ACCELERATE_USE_CPU="1")
    launch([PY, "-m", "accelerate.commands.launch", "--use_deepspeed", "--num_processes", "2", "--zero_stage", "3",
            "--main_process_port", free_port(), ROOT / "launch/train.py", *args("dcgan", run), "train.total_kimg=0.048"],
           env=env)
    cfg = (run / "config.yaml").read_text()
    assert re.search(r"backend:\n  name: deepspeed\n  zero_stage: 3\n", cfg), cfg
    s = torch.load(latest_ckpt(run) / "state.pt", weights_only=True)
    assert s["world_size"] == 2 and s["optim"]["G"]["zero_stage"] == 3


SRUN = """#!/bin/bash
# SLURM's srun on one machine: one task per node of the allocation, each with its SLURM_NODEID
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((i = 0; i < SLURM_NNODES; i++)); do SLURM_NODEID=$i "$@" & pids+=($!); done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done; exit $rc
"""


def test_slurm_script_trains_two_nodes_over_loopback_with_identical_g_ema_at_every_checkpoint(tmp_path):
    """launch/slurm_train.sh as sbatch would run it on a 2-node allocation: srun starts one torchrun per
    "node" (here both on 127.0.0.1, one process each), and they form one group of two ranks."""
    bin_dir, run = tmp_path / "bin", tmp_path / "run"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(SRUN)
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho 127.0.0.1\n")  # show hostnames: the first node
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = dict(env1(), PATH=f"{bin_dir}:{os.path.dirname(PY)}:{os.environ['PATH']}", SLURM_NNODES="2", SLURM_JOB_NODELIST="node[0-1]",
               SLURM_SUBMIT_DIR=str(ROOT), NPROC_PER_NODE="1", MASTER_PORT=str(free_port()))
    a = args("dcgan", run, *ds(2), "checkpoint.every_kimg=0.048", "checkpoint.keep=10")
    launch(["bash", ROOT / "launch/slurm_train.sh", *a], env=env)
    states = sorted((run / "checkpoints").glob("step-*/state.pt"))
    assert len(states) == 4
    for p in states:
        s = torch.load(p, weights_only=True)
        assert s["world_size"] == 2 and len(s["ema_digests"]) == 2
        assert s["ema_digests"][0] == s["ema_digests"][1] and s["digests"][0] == s["digests"][1], p


def _all_finite(run) -> bool:
    return all(bool(torch.isfinite(t).all()) for w in nets_of(run).values() for t in w.values() if t.is_floating_point())


def test_fp16_overflow_on_one_rank_is_skipped_by_the_engine_and_counted_once(tmp_path):
    """ZeRO-2, fp16: +inf injected into D's gradient on rank 1 at step 6. Both ranks skip that D step
    (the engines' overflow check is all-reduced), the trainer counts it once, training goes on."""
    base, hit = tmp_path / "base", tmp_path / "hit"
    fp16 = ("train.mixed_precision=fp16",)
    torchrun(*args("dcgan", base, *ds(2), *fp16))
    launch(torchrun_cmd(2, "train.py", *args("dcgan", hit, *ds(2), *fp16)),
           env=dict(env1(), HIFIGAN_INJECT_NONFINITE_GRAD="D:6-6@1"))
    sb, sh = (torch.load(latest_ckpt(r) / "state.pt", weights_only=True) for r in (base, hit))
    assert sh["step"] == sb["step"] == 10
    assert sh["nonfinite_steps"] == sb["nonfinite_steps"] + 1  # the fp16 warm-up overflows of both, and ours
    assert sh["digests"][0] == sh["digests"][1]
    assert _all_finite(hit)
    assert sh["scalers"]["D"]["scale"] < sb["scalers"]["D"]["scale"]  # D's GradScaler backed off once more


def test_fp16_run_of_overflows_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    r = run_script("train.py", *args("dcgan", run, *ds(2), "train.mixed_precision=fp16", "train.max_nonfinite=4",
                                     "checkpoint.every_kimg=0.064", "train.total_kimg=0.32"),
                   check=False, env=dict(env1(), HIFIGAN_INJECT_NONFINITE_GRAD="D:6-100"))
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "training diverged" in errors[0] and "Traceback" not in r.stderr
    # overflows from step 6 on are skipped (weights untouched), so step 8's checkpoint is written and finite;
    # the fourth in a row (step 9) stops the run before its own
    assert latest_ckpt(run).name == "step-00000008" and "step-00000008 is still latest" in errors[0]
    assert _all_finite(run)


def _one_line_error(r) -> str:
    assert r.returncode == 2, r.stdout[-1500:] + r.stderr[-1500:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("extra, says", [
    (("backend.nets.Q.zero_stage=1",), "backend.nets.Q: not a network this recipe trains"),
    (("backend.zero_stage=4",), "backend.zero_stage"),
    (("backend.nets.D.offlaod=true",), "offlaod"),
])
def test_bad_deepspeed_settings_fail_in_one_line(tmp_path, extra, says):
    r = run_script("train.py", *args("dcgan", tmp_path / "run", "backend.name=deepspeed", *extra), check=False)
    assert says in _one_line_error(r)


def test_wgan_weight_clipping_under_zero_is_refused_in_one_line(tmp_path):
    r = run_script("train.py", ROOT / "configs/mnist_wgan.yaml", *shrink("mnist_wgan.yaml", tmp_path / "run"),
                   *ds(2), check=False)
    assert "weight_clip" in _one_line_error(r)


def test_resuming_a_zero_run_with_another_stage_or_world_size_is_refused_in_one_line(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs("dcgan", 2), run)
    more = "train.total_kimg=0.32"
    msg = _one_line_error(run_script("train.py", *args("dcgan", run, *ds(3), more), check=False))
    assert "ZeRO stage 2" in msg and "backend.zero_stage=2" in msg
    msg = _one_line_error(run_script("train.py", *args("dcgan", run, *ds(2), more), check=False))
    assert "split over 2 ranks" in msg and "resume on 2 processes" in msg
    msg = _one_line_error(run_script("train.py", *args("dcgan", run, more), check=False))  # the DDP backend
    assert "backend.name=deepspeed backend.zero_stage=2" in msg
    assert latest_ckpt(run).name == "step-00000010"  # nothing was lost


def test_optimizer_state_survives_as_plain_values():
    """DeepSpeed's optimizer state holds objects (its loss scaler) and enums: stored as plain values and put
    back into the live objects, so state.pt never needs to unpickle DeepSpeed's classes."""
    import enum
    import io
    from hifigan.train.deepspeed_backend import plain, restore

    class Stage(enum.IntEnum):
        two = 2

    class Scaler:
        def __init__(self, s):
            self.cur_scale, self.dynamic, self.helper = s, True, object()

    saved = {"loss_scaler": Scaler(8.0), "zero_stage": Stage.two, "parts": [torch.ones(3)], "v": "0.19"}
    buf = io.BytesIO()
    torch.save(plain(saved), buf)
    loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    live = {"loss_scaler": Scaler(1.0), "zero_stage": Stage.two, "parts": [torch.zeros(3)], "v": "0.19"}
    back = restore(loaded, live)
    assert back["loss_scaler"] is live["loss_scaler"] and back["loss_scaler"].cur_scale == 8.0
    assert back["zero_stage"] is Stage.two and torch.equal(back["parts"][0], torch.ones(3))
