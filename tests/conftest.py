"""Shared helpers: tiny recipes, running the launch scripts in fresh processes, reading weights."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Triton picks its CPU interpreter when a kernel is defined: set it before any kernel module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def tiny_overrides(run_dir, arch="dcgan", **extra) -> list[str]:
    """Overrides that shrink a recipe to a CPU test size (seconds)."""
    o = [f"run_dir={run_dir}", "log.progress=false", "log.grid_size=16", "train.batch_size=16",
         "train.ema_bn_batches=2", "train.threads=1"]
    if arch == "dcgan":
        o += ["G.width=8", "D.width=8"]
    else:
        o += ["G.hidden=[32,64]", "D.hidden=[64,32]", "D.dropout=0.0"]
    o += [f"{k}={v}" for k, v in extra.items()]
    return o


def env1() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def run_script(script: str, *args, check=True, timeout=300, **kw) -> subprocess.CompletedProcess:
    cmd = [PY, str(ROOT / "launch" / script), *map(str, args)]
    env = kw.pop("env", None) or env1()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_cmd(nproc: int, script: str, *args) -> list[str]:
    return [PY, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
            f"--master_port={free_port()}", str(ROOT / "launch" / script), *map(str, args)]


def read_weights(path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(path))


def latest_ckpt(run_dir) -> Path:
    root = Path(run_dir) / "checkpoints"
    return root / (root / "latest").read_text().strip()


def assert_same_checkpoints(a, b, nets=("G", "D", "G_ema")) -> None:
    """The latest checkpoints of run dirs a and b are the same step with bit-identical weights of `nets`."""
    import torch
    ca, cb = latest_ckpt(a), latest_ckpt(b)
    assert ca.name == cb.name
    for net in nets:
        wa, wb = read_weights(ca / f"{net}.safetensors"), read_weights(cb / f"{net}.safetensors")
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{net}.{k} differs after resuming"


def train_two_processes(config, *overrides, timeout=300) -> None:
    """launch/train.py CONFIG OVERRIDES on two gloo processes (torchrun); fails the test with its output."""
    r = subprocess.run(torchrun_cmd(2, "train.py", config, *overrides), cwd=ROOT, env=env1(), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-2500:]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops: with two intra-op threads on a busy 2-core machine, OpenMP's spinning made such
    files 10x slower; one thread is fast either way. Restored after the module."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def dcgan_cfg():
    return str(ROOT / "configs" / "mnist_dcgan.yaml")


@pytest.fixture
def gan_cfg():
    return str(ROOT / "configs" / "mnist_gan.yaml")


def kill_run(run_dir) -> None:
    """kill -9 the launcher and every worker of a run (torchrun puts workers in their own sessions)."""
    import signal
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"run_dir={run_dir}".encode() in cmd:
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
