"""Nothing lost, nothing cryptic: divergence, two trainers on one run dir, a full disk, damaged
checkpoints. Every failure is one line on stderr and exit code 2, and the newest good checkpoint
stays `latest`."""
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import PY, ROOT, env1, latest_ckpt, read_weights, run_script, tiny_overrides

DCGAN = ROOT / "configs" / "mnist_dcgan.yaml"


def overrides(run, kimg, **extra):
    o = {"train.total_kimg": kimg, "checkpoint.every_kimg": 0.16, "log.every_kimg": 0.16,
         "log.image_every_kimg": 100, **extra}
    return tiny_overrides(run, **o)


def train(run, kimg, check=True, **extra):
    return run_script("train.py", DCGAN, *overrides(run, kimg, **extra), check=check)


def run_here(capsys, script, *args):
    """A launch script's main(argv) in this process (no interpreter start-up: for runs that fail
    fast); returns what run_script does: returncode, stdout, stderr."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"launch_{Path(script).stem}", ROOT / "launch" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    rc = module.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out, err)


def one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    return errors[0]


def all_finite(run) -> bool:
    for f in (Path(run) / "checkpoints").glob("step-*/*.safetensors"):
        for k, v in load_file(str(f)).items():
            if v.is_floating_point() and not torch.isfinite(v).all():
                return False
    return True


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """20 steps of a tiny DCGAN with checkpoints at steps 10 and 20."""
    run = tmp_path_factory.mktemp("base")
    train(run, 0.32)
    assert latest_ckpt(run).name == "step-00000020"
    return run


def copy_of(base, tmp_path, name="run") -> Path:
    run = tmp_path / name
    shutil.copytree(base, run)
    return run


# -- divergence ----------------------------------------------------------------------------------
@pytest.mark.parametrize("max_nonfinite", [3, 1000])
def test_divergence_stops_with_one_line_and_keeps_the_newest_finite_checkpoint(base_run, tmp_path, max_nonfinite):
    """lr 1e30 turns the weights and the losses non-finite within a step or two. With a short streak
    limit the streak stops the run; with a long one a checkpoint (every step, keep 1, so the old
    rotation would have deleted every good one) meets the non-finite weights and stops it instead."""
    run = copy_of(base_run, tmp_path)
    r = train(run, 1.6, check=False, **{"optim.G.lr": 1e30, "optim.D.lr": 1e30, "checkpoint.every_kimg": 0.016,
                                        "checkpoint.keep": 1, "train.max_nonfinite": max_nonfinite})
    msg = one_line_error(r)
    assert "training diverged" in msg and "step-00000020" in msg
    assert latest_ckpt(run).name == "step-00000020"
    assert all_finite(run)
    assert not list((run / "checkpoints").glob(".step-*"))


def test_a_nonfinite_step_changes_nothing_and_is_counted(dcgan_cfg, tmp_path, one_thread):
    """An objective whose D loss is NaN on one step: that step updates no weight, no optimizer state
    and not G_ema; it is counted; the next finite step resets the streak and training goes on."""
    import copy
    from hifigan.config import load_config
    from hifigan.train.trainer import Trainer
    tr = Trainer(load_config(dcgan_cfg, tiny_overrides(tmp_path / "run", **{"train.max_nonfinite": 2})))
    real_objective = tr.objective

    def poisoned(phase, nets, batch):
        losses, stats = real_objective(phase, nets, batch)
        if tr.step == 1 and phase == "Dmain":
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses, stats

    tr.objective = copy.copy(real_objective)
    tr.objective.__class__ = type("Poisoned", (type(real_objective),), {"__call__": staticmethod(poisoned)})
    tr.train_step()
    snap = {n: copy.deepcopy(m.state_dict()) for n, m in {**tr.nets, "G_ema": tr.G_ema}.items()}
    opt = copy.deepcopy(tr.handles["D"].state_dict()["optim"]["state"])
    tr.train_step()  # step 1: D's phase is NaN; G's phase is finite and applied
    assert tr.nonfinite_run == 1 and tr.nonfinite_total == 1
    d_now = tr.nets["D"].state_dict()
    assert all(torch.equal(d_now[k], v) for k, v in snap["D"].items() if v.is_floating_point()
               and "running" not in k and "num_batches" not in k)
    assert all(torch.equal(opt[i]["exp_avg"], s["exp_avg"]) for i, s in tr.handles["D"].state_dict()["optim"]["state"].items())
    assert all(torch.equal(tr.G_ema.state_dict()[k], v) for k, v in snap["G_ema"].items())
    means = tr.stats.means()
    assert means["Nonfinite/Dmain"] == 0.5 and means["Nonfinite/skipped_steps"] == 0.5
    assert all(v == v for v in means.values())  # the skipped phase's NaN losses stay out of the means
    tr.train_step()
    assert tr.nonfinite_run == 0 and tr.nonfinite_total == 1


# -- one trainer per run dir ---------------------------------------------------------------------
def _popen(run, kimg, **extra):
    cmd = [PY, str(ROOT / "launch" / "train.py"), str(DCGAN), *overrides(run, kimg, **extra)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env1(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lock_holder(run, proc, timeout=120) -> str:
    lock = Path(run) / ".lock"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if lock.is_file() and f"pid {proc.pid}" in lock.read_text():
            return lock.read_text()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the first trainer never took the lock")


def test_a_second_trainer_on_the_same_run_dir_exits_2_at_once(tmp_path):
    run = tmp_path / "run"
    first = _popen(run, 50)  # far more than the test waits for; stopped by SIGTERM below
    _wait_for_lock_holder(run, first)
    t0 = time.time()
    r = train(run, 50, check=False, seed=1)  # another seed: it would have mixed two runs' checkpoints
    assert time.time() - t0 < 60
    msg = one_line_error(r)
    assert "another trainer" in msg and f"pid {first.pid}" in msg
    assert first.poll() is None  # the first trainer is unaffected
    first.send_signal(signal.SIGTERM)  # it checkpoints and exits
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and "stopped by signal" in out, err
    ckpt = latest_ckpt(run)
    for f in ckpt.glob("*.safetensors"):
        read_weights(f)
    assert torch.load(ckpt / "state.pt", weights_only=True)["step"] > 0
    assert "seed: 0" in (run / "config.yaml").read_text()


def test_kill_9_never_leaves_a_stale_lock(tmp_path):
    run = tmp_path / "run"
    first = _popen(run, 50)
    _wait_for_lock_holder(run, first)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    r = train(run, 0.32)
    assert r.returncode == 0 and latest_ckpt(run).name == "step-00000020"


# -- a full disk ---------------------------------------------------------------------------------
def _limit_file_size(nbytes):
    def setup():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return setup


def test_file_size_limit_during_a_checkpoint_then_a_bit_identical_resume(base_run, tmp_path):
    """G.safetensors (250 kB) cannot be written under a 150 kB limit; config.yaml, TensorBoard and
    D.safetensors can. The save fails with one line, leaves no temporary and `latest` unchanged;
    rerun without the limit, the run resumes from step 20 and ends bit for bit where an
    uninterrupted run ends. A stale temporary (as a kill -9 during a save leaves) is removed before
    the next save."""
    run = copy_of(base_run, tmp_path)
    cmd = [PY, str(ROOT / "launch" / "train.py"), str(DCGAN), *overrides(run, 0.48)]
    r = subprocess.run(cmd, cwd=ROOT, env=env1(), capture_output=True, text=True, timeout=300,
                       preexec_fn=_limit_file_size(150_000))
    msg = one_line_error(r)
    assert "could not write checkpoint" in msg and "file-size limit" in msg and "step-00000020 stays" in msg
    assert latest_ckpt(run).name == "step-00000020"
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not (run / "checkpoints" / "step-00000030").exists()

    stale = run / "checkpoints" / ".step-00000030.tmp99999"  # as a kill -9 during a save leaves it
    stale.mkdir()
    (stale / "G.safetensors").write_bytes(b"\0" * 1000)
    train(run, 0.48)
    assert not stale.exists() and latest_ckpt(run).name == "step-00000030"  # removed before the save
    straight = tmp_path / "straight"
    train(straight, 0.48)
    for name in ("G", "D", "G_ema"):
        a = read_weights(latest_ckpt(run) / f"{name}.safetensors")
        b = read_weights(latest_ckpt(straight) / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_a_full_event_file_is_one_line_naming_it(tmp_path):
    run = tmp_path / "run"
    cmd = [PY, str(ROOT / "launch" / "train.py"), str(DCGAN), *overrides(run, 0.32, **{"log.every_kimg": 0.016})]
    r = subprocess.run(cmd, cwd=ROOT, env=env1(), capture_output=True, text=True, timeout=300,
                       preexec_fn=_limit_file_size(20_000))
    msg = one_line_error(r)
    assert "tensorboard" in msg and "file-size limit" in msg


def test_an_unwritable_run_dir_is_one_line(tmp_path, capsys, one_thread):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_here(capsys, "train.py", DCGAN, *overrides(blocker, 0.32))
    assert "exists and is not a folder" in one_line_error(r)
    r = run_here(capsys, "train.py", DCGAN, *overrides(blocker / "run", 0.32))
    assert "not a folder" in one_line_error(r)
    r = run_here(capsys, "train.py", DCGAN, *overrides("/proc/hifigan-run", 0.32))
    one_line_error(r)


# -- damaged checkpoints -------------------------------------------------------------------------
def test_latest_holding_garbage_or_another_path_falls_back_with_a_warning(base_run, tmp_path):
    other = copy_of(base_run, tmp_path, "other")
    run = copy_of(base_run, tmp_path)
    (run / "checkpoints" / "latest").write_text(str(other / "checkpoints" / "step-00000010") + "\n")
    r = train(run, 0.48)
    assert "not a complete step-N checkpoint of this folder" in r.stderr
    assert "resuming" in r.stdout and "step-00000020 at step 20" in r.stdout
    assert latest_ckpt(run).name == "step-00000030"


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(base_run, tmp_path):
    run = copy_of(base_run, tmp_path)
    g = latest_ckpt(run) / "G.safetensors"
    g.write_bytes(g.read_bytes()[:1000])
    r = train(run, 0.48)
    assert "warning:" in r.stderr and "corrupt" in r.stderr and "moved it to damaged-step-00000020" in r.stderr
    assert "step-00000010 at step 10" in r.stdout
    assert (run / "checkpoints" / "damaged-step-00000020" / "state.pt").is_file()  # moved aside, not deleted
    assert latest_ckpt(run).name == "step-00000030"


@pytest.mark.parametrize("damage", ["empty", "missing_keys"])
def test_a_damaged_training_state_is_one_line(base_run, tmp_path, damage, capsys, one_thread):
    run = copy_of(base_run, tmp_path)
    for ckpt in (run / "checkpoints").glob("step-*"):
        if damage == "empty":
            (ckpt / "state.pt").write_bytes(b"")
        else:
            state = torch.load(ckpt / "state.pt", weights_only=True)
            del state["optim"]
            torch.save(state, ckpt / "state.pt")
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    r = run_here(capsys, "train.py", DCGAN, *overrides(run, 0.48))
    msg = one_line_error(r)
    assert "no loadable checkpoint" in msg and ("empty (zero bytes)" in msg or "missing optim" in msg)
    assert "warning" not in r.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing moved or deleted


def test_changed_optimizer_settings_are_applied_on_resume(base_run, tmp_path, capsys, one_thread):
    run = copy_of(base_run, tmp_path)
    r = train(run, 0.48, **{"optim.D.lr": 1e-4, "optim.G.betas": [0.0, 0.99]})
    assert "optim.D.lr: 0.0002 -> 0.0001" in r.stdout and "optim.G.betas" in r.stdout
    state = torch.load(latest_ckpt(run) / "state.pt", weights_only=True)
    assert state["optim"]["D"]["param_groups"][0]["lr"] == 1e-4
    assert tuple(state["optim"]["G"]["param_groups"][0]["betas"]) == (0.0, 0.99)
    r = run_here(capsys, "train.py", DCGAN, *overrides(run, 0.64, **{"optim.D.name": "sgd"}))
    assert "optim.D.name" in one_line_error(r)


def test_generate_refuses_non_finite_weights(base_run, tmp_path, capsys):
    src = latest_ckpt(base_run) / "G_ema.safetensors"
    from safetensors import safe_open
    with safe_open(str(src), framework="pt") as f:
        md = f.metadata()
    tensors = load_file(str(src))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name][...] = float("nan")
    bad = tmp_path / "G_ema.safetensors"
    save_file(tensors, str(bad), metadata=md)
    msg = one_line_error(run_here(capsys, "generate.py", bad, "--out", tmp_path / "o"))
    assert "non-finite" in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, needle", [
    (["--seeds", "0-999999999999"], "more than 1,000,000 values"),
    (["--seeds", "0-99999999999999999999999"], "below 2^63"),
    (["--device", "tpu"], "not a device"),
    (["--interp", "0,1", "--frames-per-seed", "100000000"], "would need at least"),
])
def test_generate_refuses_absurd_requests_before_allocating(base_run, tmp_path, args, needle, capsys):
    msg = one_line_error(run_here(capsys, "generate.py", base_run, "--out", tmp_path / "o", *args))
    assert needle in msg
    assert not (tmp_path / "o").exists()


def test_make_shards_refuses_an_absurd_resolution(tmp_path, capsys):
    r = run_here(capsys, "make_shards.py", "--source", "mnist", "--out", tmp_path / "s", "--resolution", "65536")
    assert "--resolution 65536" in one_line_error(r)
