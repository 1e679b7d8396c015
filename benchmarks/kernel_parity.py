#!/usr/bin/env python
"""How close are the fast kernels to their references? One table: op x dtype x pass.

    TRITON_INTERPRET=1 python benchmarks/kernel_parity.py       # CPU: Triton's interpreter, small shapes
    python benchmarks/kernel_parity.py --impls triton,cuda      # GPU: StyleGAN2-like shapes

For each op (bias_act lrelu + bias + clamp, modulated conv 3x3 / up=2 / toRGB, upfirdn2d up and
down), each dtype and each pass (forward, first-order gradients of all inputs, second-order:
the gradient of the squared first-order gradients, as R1 / path length need), it prints
max |fast - reference| / max |reference|, the reference computed in fp32 from the same rounded
inputs. The tests assert the same quantities against a tolerance table (tests/test_kernels_*.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hifigan.kernels.bias_act import bias_act  # noqa: E402
from hifigan.kernels.dispatch import KernelUnavailable  # noqa: E402
from hifigan.kernels.modconv import modulated_conv2d  # noqa: E402
from hifigan.kernels.modconv.reference import up_pads  # noqa: E402
from hifigan.kernels.upfirdn2d import upfirdn2d  # noqa: E402
from hifigan.nn.fir import setup_filter  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cases(dev, big: bool):
    N, C, R = (8, 64, 32) if big else (2, 6, 7)
    f = setup_filter().to(dev)
    yield "bias_act lrelu+clamp", [(N, C, R, R), (C,)], lambda impl, x, b: bias_act(x, b, act="lrelu", clamp=1.5, impl=impl)
    for name, k, up, demod in (("modconv 3x3", 3, 1, True), ("modconv up2", 3, 2, True), ("modconv toRGB", 1, 1, False)):
        O = 3 if k == 1 else C + 1
        yield name, [(N, C, R, R), (O, C, k, k), (N, C)], \
            (lambda up, demod: lambda impl, x, w, s: modulated_conv2d(x, w, s + 1, demod, up, 1, f if up > 1 else None,
                                                                   impl=impl))(up, demod)
    yield "upfirdn2d up2", [(N, C, R, R)], lambda impl, x: upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4, impl=impl)
    yield "upfirdn2d filter", [(N, C, R + 1, R + 1)], lambda impl, x: upfirdn2d(x, f, pad=up_pads(4, 3), gain=4, impl=impl)


def passes(fn, impl, inputs, dy):
    ins = [t.detach().clone().requires_grad_() for t in inputs]
    y = fn(impl, *ins)
    g = torch.autograd.grad(y, ins, dy, create_graph=True, allow_unused=True)
    g = [torch.zeros_like(t) if v is None else v for t, v in zip(ins, g)]
    pen = sum(v.float().square().sum() for v in g)
    h = torch.autograd.grad(pen, ins, allow_unused=True) if pen.requires_grad else [None] * len(ins)
    h = [torch.zeros_like(t) if v is None else v for t, v in zip(ins, h)]
    return [y], g, h


def rel(a: list, b: list) -> float:
    return max(((x.float() - y.float()).abs().max() / y.float().abs().max().clamp(min=1e-12)).item() for x, y in zip(a, b))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impls", default="triton,cuda")
    p.add_argument("--dtypes", default="fp32,bf16,fp16")
    args = p.parse_args(argv)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name() if dev == "cuda" else "CPU (Triton interpreter)"
    print(f"device: {name}; torch {torch.__version__}\n")
    print("| op | shape | dtype | impl | forward | backward | double backward |\n|---|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    for op, shapes, fn in cases(dev, dev == "cuda"):
        for dname in args.dtypes.split(","):
            dt = DTYPES[dname]
            inputs = [torch.randn(s, generator=gen).to(dev, dt if i == 0 else torch.float32) for i, s in enumerate(shapes)]
            y0 = fn("reference", *[t.float() for t in inputs])
            dy = torch.randn(y0.shape, generator=gen).to(dev, dt)
            ref = passes(fn, "reference", [t.float() for t in inputs], dy.float())
            for impl in args.impls.split(","):
                try:
                    fast = passes(fn, impl, inputs, dy)
                except KernelUnavailable as e:
                    if "there is no impl" in str(e):
                        continue
                    print(f"| {op} | {tuple(shapes[0])} | {dname} | {impl} | unavailable: {str(e)[:60]} | | |")
                    continue
                r = [rel(a, b) for a, b in zip(fast, ref)]
                print(f"| {op} | {tuple(shapes[0])} | {dname} | {impl} | {r[0]:.1e} | {r[1]:.1e} | {r[2]:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
