#!/usr/bin/env python
"""Train NVIDIA's own StyleGAN2 (stylegan2-ada-pytorch) on the 5,000 built-in MNIST digits at 32x32
for a wall-clock budget on this machine, and score its G_ema with our mnist_fd metric: the
"independent reference trained for the same time" that the tiny recipe is compared with.

    python benchmarks/stylegan2_reference_run.py --reference /tmp/stylegan2-ada-pytorch --minutes 10
    python benchmarks/stylegan2_reference_run.py --reference ... --cbase 512 --batch 16 --map 2 --pl 0 --mix 0 --gamma 1

--reference: a checkout of NVlabs/stylegan2-ada-pytorch OUTSIDE this tree (it is under a non-commercial
license; nothing of it is copied here). Its networks (training/networks.py) and loss
(training/loss.py StyleGAN2Loss) are used as they are; the loop is ours and follows its
training_loop.py: phases Gmain, Greg (every 4, when path length is on), Dmain, Dreg (every 16), the
lazy-regularization Adam correction (lr * k/(k+1), betas ** (k/(k+1))), non-finite gradients zeroed,
G_ema with half-life `--ema` kimg and optional ramp-up. On CPU its custom ops fall back to plain
PyTorch. The defaults are configs/stylegan2_mnist.yaml's settings. Prints one JSON line: kimg reached,
seconds, and FD / coverage / class histogram of --samples G_ema images (seeds of torch's generator,
noise_mode const); FD depends on the sample count, compare equal counts.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hifigan.errors import UserError, run_main  # noqa: E402


def score(images: torch.Tensor) -> dict:
    """mnist_fd's figures for images [N, 1, 32, 32] in [-1, 1] (quantised to uint8 like saved images)."""
    from hifigan.metrics.mnist_fd import MnistFD
    u8 = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    r = MnistFD(MnistFD.Config()).score(u8)
    return {**r.scalars, "mnist_class_hist": r.details["mnist_class_hist"]}


def check_args(a) -> None:
    """One line for a value the run cannot use."""
    for name in ("minutes", "gamma", "pl", "mix", "glr", "dlr", "ema"):
        v = getattr(a, name)
        if not math.isfinite(v) or v < 0:
            raise UserError(f"--{name} {v}: must be a finite number >= 0")
    if a.minutes <= 0:
        raise UserError(f"--minutes {a.minutes}: must be > 0")
    if a.ramp is not None and not (math.isfinite(a.ramp) and a.ramp > 0):
        raise UserError(f"--ramp {a.ramp}: must be a finite number > 0 (or leave it out for no ramp-up)")
    for name, lo in (("cbase", 1), ("cmax", 1), ("map", 1), ("zdim", 1), ("mbstd", 1), ("batch", 1), ("samples", 2)):
        if getattr(a, name) < lo:
            raise UserError(f"--{name} {getattr(a, name)}: must be at least {lo}")
    if a.batch % min(a.mbstd, a.batch):
        raise UserError(f"--mbstd {a.mbstd} must divide --batch {a.batch} (the reference requires it)")
    if a.mix > 1:
        raise UserError(f"--mix {a.mix}: a probability, at most 1")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="checkout of NVlabs/stylegan2-ada-pytorch (outside this tree)")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget")
    p.add_argument("--cbase", type=int, default=1024, help="channel_base")
    p.add_argument("--cmax", type=int, default=128, help="channel_max")
    p.add_argument("--map", type=int, default=4, help="mapping layers")
    p.add_argument("--zdim", type=int, default=64, help="z = w size")
    p.add_argument("--gamma", type=float, default=0.1, help="R1 gamma")
    p.add_argument("--pl", type=float, default=2.0, help="path-length weight (0: no Greg phase)")
    p.add_argument("--mix", type=float, default=0.9, help="style-mixing probability")
    p.add_argument("--glr", type=float, default=0.0025, help="G learning rate")
    p.add_argument("--dlr", type=float, default=0.0025, help="D learning rate")
    p.add_argument("--mbstd", type=int, default=4, help="minibatch-stddev group")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ema", type=float, default=2.0, help="G_ema half-life in kimg")
    p.add_argument("--ramp", type=float, default=None, help="G_ema ramp-up (reference: 0.05 or None)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=2000)
    a = p.parse_args(argv)
    check_args(a)
    ref = Path(a.reference)
    if not (ref / "training" / "networks.py").is_file():
        raise UserError(f"--reference {ref}: no training/networks.py there; give a checkout of NVlabs/stylegan2-ada-pytorch")
    sys.path.insert(0, str(ref))
    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator

    from hifigan.data.builtin import load_mnist
    from hifigan.data.memory import resize_uint8
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    x, _ = load_mnist(None)
    real = torch.from_numpy(resize_uint8(x[:, None], 32)).float() / 127.5 - 1
    syn = dict(channel_base=a.cbase, channel_max=a.cmax, num_fp16_res=0, conv_clamp=None)
    G = Generator(z_dim=a.zdim, c_dim=0, w_dim=a.zdim, img_resolution=32, img_channels=1,
                  mapping_kwargs=dict(num_layers=a.map), synthesis_kwargs=syn).train().requires_grad_(False)
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=1, epilogue_kwargs=dict(mbstd_group_size=a.mbstd),
                      **syn).train().requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    loss = StyleGAN2Loss(torch.device("cpu"), G.mapping, G.synthesis, D, style_mixing_prob=a.mix,
                         r1_gamma=a.gamma, pl_weight=a.pl)
    phases = []
    for name, net, lr, every in (("G", G, a.glr, 4 if a.pl > 0 else None), ("D", D, a.dlr, 16)):
        if every is None:
            opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
            phases.append((name + "both", net, opt, 1))
            continue
        r = every / (every + 1)
        opt = torch.optim.Adam(net.parameters(), lr=lr * r, betas=(0.0, 0.99 ** r), eps=1e-8)
        phases += [(name + "main", net, opt, 1), (name + "reg", net, opt, every)]
    B, nimg, step, t0 = a.batch, 0, 0, time.time()
    while time.time() - t0 < a.minutes * 60:
        real_img = real[torch.randint(len(real), (B,))]
        for name, net, opt, every in phases:
            if step % every:
                continue
            opt.zero_grad(set_to_none=True)
            net.requires_grad_(True)
            loss.accumulate_gradients(phase=name, real_img=real_img, real_c=torch.zeros(B, 0),
                                      gen_z=torch.randn(B, a.zdim), gen_c=torch.zeros(B, 0), sync=True, gain=every)
            net.requires_grad_(False)
            for q in net.parameters():
                if q.grad is not None:
                    torch.nan_to_num(q.grad, nan=0, posinf=1e5, neginf=-1e5, out=q.grad)
            opt.step()
        ema_nimg = a.ema * 1000 if a.ramp is None else min(a.ema * 1000, nimg * a.ramp)
        beta = 0.5 ** (B / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for pe, q in zip(G_ema.parameters(), G.parameters()):
                pe.copy_(q.lerp(pe, beta))
            for be, b in zip(G_ema.buffers(), G.buffers()):
                be.copy_(b)
        nimg += B
        step += 1
    seconds = time.time() - t0
    with torch.no_grad():
        imgs = torch.cat([G_ema(z, torch.zeros(len(z), 0), noise_mode="const")
                          for z in torch.randn(a.samples, a.zdim).split(250)])
    print(json.dumps({"kimg": nimg / 1000, "seconds": round(seconds, 1), "steps": step, **score(imgs)}))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
