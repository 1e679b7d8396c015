#!/usr/bin/env python
"""Do the fused kernels train like the references? Loss curves of the same run, twice.

    python benchmarks/kernel_agreement.py                                   # stylegan2_ffhq256, 100 steps
    python benchmarks/kernel_agreement.py configs/stylegan2_mnist.yaml --steps 100 --fast triton
    python benchmarks/kernel_agreement.py configs/stylegan2_ffhq.yaml train.batch_size=8 --steps 100

The recipe's real Trainer (same seed, the random in-memory feed of step_time.py, so the images are
identical) runs --steps steps with train.kernels=reference and again with train.kernels=--fast
(default auto: Triton on CUDA tensors). Per loss term it prints the largest and the median step-wise
difference relative to the loss's scale, and the difference of the last-20-step means. Float
rounding differs between the two paths, and a GAN amplifies differences over steps, so agreement
means "within bf16 noise": median step-wise difference <= 1e-2 of the scale and last-20-step means
within 5%. On a CPU the fast path is the Triton interpreter (set TRITON_INTERPRET=1): slow, use a
tiny recipe and a few steps.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from step_time import random_feed_trainer  # noqa: E402

from hifigan.config import load_config  # noqa: E402
from hifigan.errors import run_main  # noqa: E402
from hifigan.kernels import dispatch  # noqa: E402


def curves(path: str, overrides: list[str], impl: str, steps: int) -> dict[str, list[float]]:
    """Loss terms per step of `steps` training steps with train.kernels=impl."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(ROOT / path, [f"run_dir={tmp}", "log.progress=false", *overrides, f"train.kernels={impl}"])
        tr = random_feed_trainer(cfg)
        seen: dict[str, list[float]] = defaultdict(list)
        add = tr.stats.add

        def record(name, value):
            if name.startswith("Loss/"):
                seen[name].append(float(value))
            add(name, value)
        tr.stats.add = record
        try:
            for _ in range(steps):
                tr.train_step()
        finally:
            dispatch.set_default_impl("auto")
            del tr.stats.add
        return dict(seen)


def compare(ref: dict, fast: dict) -> tuple[list[str], bool]:
    rows, ok = [], True
    rows.append("| loss | values | scale | max step diff | median step diff | last-20 mean ref | fast | verdict |")
    rows.append("|---|---|---|---|---|---|---|---|")
    for name in sorted(ref):
        a, b = fast.get(name, []), ref[name]
        n = min(len(a), len(b))
        if n == 0:
            rows.append(f"| {name} | 0 | | | | | | missing |")
            ok = False
            continue
        scale = max(statistics.fmean(abs(v) for v in b[:n]), 1e-3)
        diffs = [abs(x - y) / scale for x, y in zip(a[:n], b[:n])]
        tail = min(20, n)
        mr, mf = statistics.fmean(b[n - tail:n]), statistics.fmean(a[n - tail:n])
        good = statistics.median(diffs) <= 1e-2 and abs(mf - mr) <= 0.05 * max(abs(mr), scale)
        ok &= good
        rows.append(f"| {name} | {n} | {scale:.4g} | {max(diffs):.2e} | {statistics.median(diffs):.2e} | "
                    f"{mr:.4g} | {mf:.4g} | {'agree' if good else 'DIFFER'} |")
    return rows, ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", nargs="?", default="configs/stylegan2_ffhq256.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to both runs")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--fast", default="auto", choices=("auto", "triton", "cuda"), help="the impl compared")
    args = p.parse_args(argv)

    def run():
        ref = curves(args.recipe, args.overrides, "reference", args.steps)
        fast = curves(args.recipe, args.overrides, args.fast, args.steps)
        rows, ok = compare(ref, fast)
        dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        print(f"{args.recipe} {' '.join(args.overrides)}: {args.steps} steps, reference vs {args.fast}; "
              f"device: {dev}; torch {torch.__version__}\n")
        print("\n".join(rows))
        print(f"\n{'AGREE' if ok else 'DIFFER'}: median step-wise difference <= 1e-2 of the scale and "
              "last-20-step means within 5%")
        if not ok:
            raise SystemExit(1)
    return run_main(run)


if __name__ == "__main__":
    sys.exit(main())
