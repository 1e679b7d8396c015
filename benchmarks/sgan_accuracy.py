#!/usr/bin/env python
"""Test accuracy of a trained discriminator's K-way classification on the held-out digits.

    python benchmarks/sgan_accuracy.py runs/mnist_sgan [runs/mnist_sgan_100labels ...] [--head auto]

For a semi-supervised GAN (Odena 2016, arXiv:1606.01583; Salimans et al. 2016, arXiv:1606.03498)
the classifier is D's (K+1)-way "class_logits" head with the "fake" logit dropped: the prediction is
the argmax over the first K logits. The same works for an AC-GAN's auxiliary classifier (K logits)
and, with --head classifier_logits, for the separate classifier of "cgan_classifier".

Each run's D comes from its latest checkpoint, and the run's own config (stored in the checkpoint)
says which images it never trained on: `data.holdout` = N held out the last N images of a fixed,
seed-independent permutation (hifigan.data.memory.holdout_split), which this script rebuilds. A run
trained without data.holdout has no test set here and is reported as an error.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from hifigan.config import load_config, loads
from hifigan.data.builtin import load_mnist
from hifigan.data.memory import holdout_split, resize_uint8
from hifigan.errors import UserError, run_main
from hifigan.train.checkpoint import build_net, resolve

HEADS = ("auto", "class_logits", "classifier_logits")


def load_run(run: str):
    """(D in eval mode, the run's config) from the latest checkpoint of `run`."""
    ckpt = resolve(run)
    path = ckpt / "D.safetensors" if ckpt.is_dir() else ckpt
    if not path.is_file() or path.name != "D.safetensors":
        raise UserError(f"{run}: no D.safetensors in its checkpoint; give a run dir or checkpoint folder")
    D, md = build_net(path)
    if "config" not in md:
        raise UserError(f"{path}: holds no run config, so its held-out digits are unknown; give a run dir")
    return D.eval(), load_config(None, mapping=loads(md["config"]))


def held_out(data_cfg, run: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The run's held-out digits as float [N, 1, H, W] in [-1, 1] at its resolution, their labels,
    and the number of classes K in the whole set."""
    if not data_cfg.holdout:
        raise UserError(f"{run}: trained without data.holdout, so every digit was a training image; "
                        f"train with data.holdout=N (e.g. 1000) to keep a test set")
    images, labels = load_mnist(data_cfg.path, data_cfg.split)
    _, idx = holdout_split(len(images), data_cfg.holdout)
    x = resize_uint8(images[idx][:, None], data_cfg.resolution)
    x = torch.from_numpy(np.ascontiguousarray(x)).float().div(127.5).sub(1)
    return x, torch.from_numpy(labels[idx]), int(labels.max()) + 1


def pick_head(D, head: str, run: str) -> str:
    if head == "auto":
        head = "class_logits" if getattr(D, "aux_classes", 0) else "classifier_logits"
    size = {"class_logits": getattr(D, "aux_classes", 0),
            "classifier_logits": getattr(D, "classifier_classes", 0)}[head]
    if not size:
        raise UserError(f"{run}: its D has no {head} head (aux_classes / classifier_classes is 0); "
                        f"this script needs an SGAN / AC-GAN / cgan_classifier run")
    if D.num_classes:
        raise UserError(f"{run}: its D is conditional (D.num_classes = {D.num_classes}): it is told the class, "
                        f"so it cannot be scored as a classifier")
    return head


@torch.no_grad()
def accuracy(D, head: str, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Share of `x` whose argmax over the first `num_classes` logits of `head` is its label."""
    logits = torch.cat([D(chunk, heads=(head,))[head] for chunk in x.split(500)])
    if logits.shape[1] < num_classes:
        raise UserError(f"D's {head} has {logits.shape[1]} logits but the data has {num_classes} classes")
    return (logits[:, :num_classes].argmax(1) == y).float().mean().item()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run dirs (or checkpoint folders) whose D is scored")
    p.add_argument("--head", choices=HEADS, default="auto",
                   help="D's classifier head; auto = class_logits (SGAN, AC-GAN) if present, else classifier_logits")
    args = p.parse_args(argv)

    def body():
        torch.set_num_threads(2)
        rows = []
        for run in args.runs:
            D, cfg = load_run(run)
            head = pick_head(D, args.head, run)
            x, y, num_classes = held_out(cfg.data, run)
            acc = accuracy(D, head, x, y, num_classes)
            labels = "all" if cfg.data.labels_per_class is None else str(cfg.data.labels_per_class)
            rows.append((run, cfg.objective.name, labels, len(x), acc))
        print("| run | objective | labels per class | held-out digits | test accuracy |")
        print("|---|---|---|---|---|")
        for run, objective, labels, n, acc in rows:
            print(f"| {run} | {objective} | {labels} | {n} | {acc:.4f} |")
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
