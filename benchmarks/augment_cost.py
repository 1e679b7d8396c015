"""The cost of the augmentation pipelines (hifigan/nn/augment.py): ms per call, forward and forward +
backward, at N=32 C=1 32x32 (MNIST-sized) and N=8 C=3 256x256, for p in 0, 0.2, 0.6, 1.0.

    python benchmarks/augment_cost.py                               # ADA 'bgc' and DiffAugment, this process's threads
    python benchmarks/augment_cost.py --threads 1 --reference /tmp/stylegan2-ada-pytorch

--reference: a checkout of NVlabs/stylegan2-ada-pytorch OUTSIDE this tree (it is under a non-commercial
license; nothing of it is copied here): its training/augment.py AugmentPipe with the same 'bgc'
settings is timed beside ours (on CPU its custom ops fall back to plain PyTorch).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from hifigan.nn.augment import AdaAugment, DiffAugment

SHAPES = ((32, 1, 32), (8, 3, 256))
PS = (0.0, 0.2, 0.6, 1.0)
BGC = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
           brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)


class Rand:
    """A Randomness over torch's global generator (the trainer's is per-sample; the cost is alike)."""

    def __init__(self, n, device):
        self.size, self.device = n, device

    def rand(self, *dims):
        return torch.rand(self.size, *dims, device=self.device)

    def randn(self, *dims):
        return torch.randn(self.size, *dims, device=self.device)


def timed(fn, reps: int, device) -> float:
    """Median ms of `reps` calls after one warm-up."""
    fn()
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)


def calls(pipe, x, rand, backward: bool):
    w = torch.randn_like(x)

    def run():
        xi = x.detach().requires_grad_(backward)
        y = pipe(xi) if rand is None else pipe(xi, rand)
        if backward:
            (y * w).sum().backward()
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reference", default="", help="path of an NVlabs/stylegan2-ada-pytorch checkout to compare with")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    pipes = {"ada (hifigan)": AdaAugment().to(dev)}
    if args.reference:
        sys.path.insert(0, args.reference)
        from training.augment import AugmentPipe  # noqa: E402 (the reference, outside this tree)
        pipes["ada (NVlabs)"] = AugmentPipe(**BGC).to(dev)
    print(f"torch {torch.__version__}, {dev}, {torch.get_num_threads()} threads, median of {args.reps}\n")
    print("| pipeline | N, C, H=W | p | forward ms | forward + backward ms |")
    print("|---|---|---|---:|---:|")
    for n, c, r in SHAPES:
        x = torch.rand(n, c, r, r, device=dev) * 2 - 1
        for name, pipe in pipes.items():
            rand = Rand(n, dev) if "hifigan" in name else None
            for p in PS:
                pipe.p.fill_(p)
                f = timed(calls(pipe, x, rand, False), args.reps, dev)
                fb = timed(calls(pipe, x, rand, True), args.reps, dev)
                print(f"| {name} | {n}, {c}, {r} | {p:g} | {f:.1f} | {fb:.1f} |", flush=True)
        diff = DiffAugment().to(dev)
        f = timed(calls(diff, x, Rand(n, dev), False), args.reps, dev)
        fb = timed(calls(diff, x, Rand(n, dev), True), args.reps, dev)
        print(f"| diffaugment (color,translation,cutout) | {n}, {c}, {r} | - | {f:.1f} | {fb:.1f} |", flush=True)


if __name__ == "__main__":
    main()
