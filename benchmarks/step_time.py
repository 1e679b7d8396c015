#!/usr/bin/env python
"""Training-step time per recipe: images/s, s/kimg, peak memory and where the time goes.

    python benchmarks/step_time.py                                  # tiny recipes, this machine
    python benchmarks/step_time.py --full --batch 4 --steps 1       # full-size recipes, one step (CPU)
    python benchmarks/step_time.py --full --steps 32 --warmup 4     # on a GPU
    python benchmarks/step_time.py configs/stylegan2_ffhq.yaml train.batch_size=64 ...

Each recipe builds the real Trainer (models, objective, phases, optimizers, EMA) with an
in-memory feed of random images in place of its data, so the numbers are the training step's
own cost; the data share is the time spent inside the feed (the share that shards add is
measured by data_throughput.py). Progressive recipes are timed at their final resolution (the
step count is placed in the last stable phase). Phases that run every k steps (lazy R1 every 16,
path length every 4) are amortized: a phase's cost per step = its mean time per run x runs per
step. Shares: G = Gmain, D = Dmain, reg = Greg + Dreg, data = inside the feed, other = EMA,
buffer broadcast and bookkeeping.
"""
from __future__ import annotations

import argparse
import gc
import math
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hifigan.config import load_config  # noqa: E402
from hifigan.data.memory import StatelessFeed  # noqa: E402
from hifigan.errors import run_main  # noqa: E402
from hifigan.models import count_params  # noqa: E402
from hifigan.train import trainer as trainer_mod  # noqa: E402

TINY = ["configs/progan_mnist.yaml", "configs/stylegan1_mnist.yaml", "configs/stylegan2_mnist.yaml"]
FULL = ["configs/stylegan2_ffhq256.yaml", "configs/stylegan2_ffhq512.yaml", "configs/stylegan2_ffhq.yaml",
        "configs/stylegan1_ffhq.yaml", "configs/progan_celebahq.yaml"]


class RandomFeed(StatelessFeed):
    """The feed interface of hifigan.data with random images made on the device."""

    def __init__(self, shape, batch_gpu: int, num_classes: int, device):
        self.shape, self.batch_gpu, self.num_classes, self.device = shape, batch_gpu, num_classes, device
        self.resolution = shape[-1]
        self.gen = torch.Generator(device=device).manual_seed(0)

    def configure(self, resolution: int, batch_gpu: int) -> None:
        self.resolution, self.batch_gpu = resolution, batch_gpu

    def next(self, chunk: int, device):
        C = self.shape[0]
        img = torch.rand(self.batch_gpu, C, self.resolution, self.resolution, generator=self.gen,
                         device=self.device) * 2 - 1
        c = torch.randint(self.num_classes, (self.batch_gpu,), generator=self.gen, device=self.device) \
            if self.num_classes else None
        return img, c


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def final_stage_nimg(cfg) -> int:
    """An image count inside the last stable phase of a progressive schedule."""
    p = cfg.progressive
    doublings = int(math.log2(cfg.G.cfg.resolution // p.start_resolution))
    return int((p.stable_kimg + doublings * (p.fade_kimg + p.stable_kimg)) * 1000) + 1


def random_feed_trainer(cfg):
    """The recipe's real Trainer fed by RandomFeed; progressive recipes placed at their final stage."""
    orig = trainer_mod.Trainer._build_data
    trainer_mod.Trainer._build_data = lambda self, dry_run=False: (RandomFeed(
        self.nets["G"].img_shape, self.batch_gpu, self.nets["G"].num_classes, self.backend.device), None)
    try:
        tr = trainer_mod.Trainer(cfg)
    finally:
        trainer_mod.Trainer._build_data = orig
    if cfg.progressive is not None:
        tr.nimg = final_stage_nimg(cfg)
    return tr


def profile_step(tr, rows: int = 20) -> None:
    """The most expensive operators of one training step (every phase runs at step 0)."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if tr.backend.device.type == "cuda" else [])
    tr.step = 0
    with profile(activities=acts) as prof:
        tr.train_step()
        sync(tr.backend.device)
    key = "cuda_time_total" if tr.backend.device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows), flush=True)


def measure(path: str, overrides: list[str], steps: int, warmup: int, profile: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(ROOT / path, [f"run_dir={tmp}", "log.progress=false", *overrides])
        tr = random_feed_trainer(cfg)
        dev = tr.backend.device
        times, runs = defaultdict(float), defaultdict(int)
        run_phase, data_next = tr.run_phase, tr.data.next

        def timed_phase(ph):
            sync(dev)
            t = time.perf_counter()
            applied = run_phase(ph)
            sync(dev)
            times[ph.name] += time.perf_counter() - t
            runs[ph.name] += 1
            return applied

        def timed_next(chunk, device):
            sync(dev)
            t = time.perf_counter()
            out = data_next(chunk, device)
            sync(dev)
            times["data"] += time.perf_counter() - t
            return out
        tr.run_phase, tr.data.next = timed_phase, timed_next
        for _ in range(warmup):
            tr.train_step()
        times.clear()
        runs.clear()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        tr.step = 0  # every phase runs at step 0, so even one timed step sees each of them
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step()
        sync(dev)
        wall = (time.perf_counter() - t0) / steps
        row = summarize(path, tr, cfg, times, runs, wall, steps)
        del tr.run_phase, tr.data.next  # break the trainer <-> wrapper cycle so its memory goes now
        if profile:
            profile_step(tr)
        return row


def summarize(path, tr, cfg, times, runs, wall, steps) -> dict:
    per_step = {}  # amortized seconds per step of each phase, data excluded
    data_per_run = times["data"] / max(sum(runs[p.name] for p in tr.phases if tr.objective.reals(p.name) == "draw"), 1)
    for p in tr.phases:
        if runs[p.name]:
            mean = times[p.name] / runs[p.name]
            if tr.objective.reals(p.name) == "draw":
                mean -= data_per_run
            per_step[p.name] = mean * p.repeats / p.every
    data = data_per_run * sum(p.repeats for p in tr.phases if tr.objective.reals(p.name) == "draw")
    phases_total = sum(times[p.name] for p in tr.phases)
    other = max(wall * steps - phases_total, 0.0) / steps
    step = sum(per_step.values()) + data + other
    B = tr.batch_size
    peak = (torch.cuda.max_memory_allocated(tr.backend.device) / 2**30 if tr.backend.device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    share = lambda s: 100 * s / step  # noqa: E731
    stage = tr.stage.resolution if tr.stage is not None else tr.nets["G"].img_shape[-1]
    return {
        "recipe": Path(path).stem, "res": stage, "batch": B, "G_params": count_params(tr.nets["G"]),
        "D_params": count_params(tr.nets["D"]), "img_s": B / step, "s_kimg": 1000 * step / B, "peak_gib": peak,
        "G": share(per_step.get("Gmain", 0)), "D": share(per_step.get("Dmain", 0)),
        "reg": share(per_step.get("Greg", 0) + per_step.get("Dreg", 0)), "data": share(data),
        "other": share(other), "steps": steps, "accum": tr.accum,
    }


def table(rows: list[dict], device: str) -> str:
    mem = "peak GPU GiB" if device == "cuda" else "peak RSS GiB"
    out = [f"| recipe | res | batch (x accum) | G params | D params | img/s | s/kimg | {mem} | G % | D % | reg % | data % | other % | timed steps |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = f" ({r['batch'] // r['accum']} x {r['accum']})" if r["accum"] > 1 else ""
        out.append(f"| {r['recipe']} | {r['res']}² | {r['batch']}{acc} | {r['G_params']:,} | {r['D_params']:,} | "
                   f"{r['img_s']:.1f} | {r['s_kimg']:.1f} | {r['peak_gib']:.2f} | {r['G']:.0f} | {r['D']:.0f} | "
                   f"{r['reg']:.0f} | {r['data']:.0f} | {r['other']:.0f} | {r['steps']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipes", nargs="*", help="recipes (default: the tiny ones; --full: the full-size ones), "
                   "then key=value overrides applied to each")
    p.add_argument("--full", action="store_true", help="the full-size recipes")
    p.add_argument("--steps", type=int, default=16, help="timed steps (16 covers one lazy-R1 interval)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--batch", type=int, default=None, help="override the global batch (e.g. small on a CPU)")
    p.add_argument("--fast", action="store_true", help="train.deterministic=false (cuDNN autotuning on GPU)")
    p.add_argument("--profile", action="store_true", help="also print the top operators of one step per recipe")
    args = p.parse_args(argv)
    recipes = [r for r in args.recipes if "=" not in r] or (FULL if args.full else TINY)
    overrides = [r for r in args.recipes if "=" in r]
    if args.batch:
        overrides.append(f"train.batch_size={args.batch}")
    if args.fast:
        overrides.append("train.deterministic=false")
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def run():
        rows = []
        for path in recipes:
            extra = list(overrides)
            if args.batch and "progressive" in (ROOT / path).read_text():
                extra += ["progressive.batch_size={}"]
            try:
                rows.append(measure(path, extra, args.steps, args.warmup, args.profile))
            except torch.OutOfMemoryError as e:
                print(f"| {Path(path).stem} | out of memory: {str(e).splitlines()[0]} |", flush=True)
                continue
            finally:  # nothing of one recipe may stay on the device for the next
                gc.collect()
                if device == "cuda":
                    torch.cuda.empty_cache()
            print(table(rows[-1:], device).splitlines()[-1], flush=True)
        name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
        print(f"\ndevice: {name}; torch {torch.__version__}; overrides: {' '.join(overrides) or 'none'}\n")
        print(table(rows, device))
    return run_main(run)


if __name__ == "__main__":
    sys.exit(main())
