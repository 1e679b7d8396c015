#!/usr/bin/env python
"""Test accuracy of a trained discriminator's K-way classification on the held-out digits.

    python benchmarks/sgan_accuracy.py runs/mnist_sgan [runs/mnist_sgan_100labels ...] [--net auto]

For a semi-supervised GAN (Odena 2016, arXiv:1606.01583; Salimans et al. 2016, arXiv:1606.03498)
the classifier is D's (K+1)-way "class_logits" head with the "fake" logit dropped: the prediction is
the argmax over the first K logits. The same works for an AC-GAN's auxiliary classifier (K logits)
and, with --net C, for the classifier network C of "cgan_classifier".

Each run's D (or C) comes from its latest checkpoint, and the run's own config (stored in the checkpoint)
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
from hifigan.checkpoint import build_net, resolve

NETS = ("auto", "D", "C")


def load_run(run: str, net: str):
    """(D or C in eval mode, the run's config) from the latest checkpoint of `run`; auto = C when the
    checkpoint has one, else D."""
    ckpt = resolve(run)
    if not ckpt.is_dir():
        raise UserError(f"{run}: give a run dir or checkpoint folder, not a single file")
    if net == "auto":
        net = "C" if (ckpt / "C.safetensors").is_file() else "D"
    path = ckpt / f"{net}.safetensors"
    if not path.is_file():
        raise UserError(f"{run}: no {net}.safetensors in its checkpoint; this script needs an SGAN / AC-GAN / "
                        f"cgan_classifier run")
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


def classify(net, run: str):
    """img -> class logits: C itself, or D's class_logits head."""
    if hasattr(net, "classes"):  # a classifier network C
        return net
    if not getattr(net, "aux_classes", 0):
        raise UserError(f"{run}: its D has no class_logits head (aux_classes is 0) and the run has no C; "
                        f"this script needs an SGAN / AC-GAN / cgan_classifier run")
    if net.num_classes:
        raise UserError(f"{run}: its D is conditional (D.num_classes = {net.num_classes}): it is told the class, "
                        f"so it cannot be scored as a classifier")
    return lambda img: net(img, heads=("class_logits",))["class_logits"]


@torch.no_grad()
def accuracy(classifier, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Share of `x` whose argmax over the first `num_classes` logits is its label."""
    logits = torch.cat([classifier(chunk) for chunk in x.split(500)])
    if logits.shape[1] < num_classes:
        raise UserError(f"the classifier has {logits.shape[1]} logits but the data has {num_classes} classes")
    return (logits[:, :num_classes].argmax(1) == y).float().mean().item()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run dirs (or checkpoint folders) whose D is scored")
    p.add_argument("--net", choices=NETS, default="auto",
                   help="the classifier: D's class_logits head (SGAN, AC-GAN) or network C; auto = C if the run has one")
    args = p.parse_args(argv)

    def body():
        torch.set_num_threads(2)
        rows = []
        for run in args.runs:
            net, cfg = load_run(run, args.net)
            x, y, num_classes = held_out(cfg.data, run)
            acc = accuracy(classify(net, run), x, y, num_classes)
            labels = "all" if cfg.data.labels_per_class is None else str(cfg.data.labels_per_class)
            rows.append((run, cfg.objective.name, labels, len(x), acc))
        print("| run | objective | labels per class | held-out digits | test accuracy |")
        print("|---|---|---|---|---|")
        for run, objective, labels, n, acc in rows:
            print(f"| {run} | {objective} | {labels} | {n} | {acc:.4f} |")
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
