#!/usr/bin/env python
"""How well a SPADE generator trained on configs/mnist_spade.yaml respects its label maps.

    python benchmarks/spade_agreement.py configs/mnist_spade.yaml --minutes 10   # train, then measure
    python benchmarks/spade_agreement.py --run runs/zoo/mnist_spade               # measure a finished run

The maps are those of the 500 digits the recipe holds out (data.holdout, a fixed permutation): each
digit's stroke mask (pixels > 127) labelled digit + 1, background 0. G_ema synthesizes one image per
map, and the image is segmented the same way the maps were made: its stroke mask is the pixels > 127,
and every stroke pixel gets the class the MNIST metric classifier (hifigan/metrics/mnist_classifier.py)
gives the whole image, + 1. Printed per row (the segmentation compared with the input map):
  pixel_acc    fraction of pixels whose label agrees (11 labels)
  mIoU         mean over the 11 labels of intersection / union (labels absent from both skipped)
  stroke_IoU   IoU of the stroke masks alone (where G draws vs. where the map says)
  class_acc    the classifier's class of the image equals the map's digit
  FD           MNIST Frechet distance of the 500 outputs to the real digits (the zoo's metric)
Rows: the trained G_ema, the same G at initialisation (a floor) and the real held-out digits
themselves (the ceiling: their stroke masks are the maps by construction). Training runs alone for
--minutes of wall clock (benchmarks/zoo.py's train_for; run nothing else meanwhile).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

LABELS = 11


def held_out_pairs(cfg):
    """(uint8 images [n, 1, R, R], int64 maps [n, 1, R, R], digits [n]) of the recipe's held-out digits."""
    from hifigan.data.builtin import load_mnist
    from hifigan.data.memory import holdout_split, mnist_labelmaps, resize_uint8
    images, labels = load_mnist(cfg.data.path, cfg.data.split)
    _, held = holdout_split(len(images), cfg.data.holdout)
    x = resize_uint8(images[held][:, None], cfg.data.resolution)
    return torch.from_numpy(x), torch.from_numpy(mnist_labelmaps(x, labels[held])).long(), torch.from_numpy(labels[held])


def segment(u8: torch.Tensor, clf) -> tuple[torch.Tensor, torch.Tensor]:
    """(label map [n, 1, R, R] of images uint8 [n, 1, R, R], their classes [n]) as the module says."""
    from hifigan.metrics.mnist_classifier import to_input
    with torch.no_grad():
        cls = clf.net(to_input(u8)).argmax(1)
    return torch.where(u8 > 127, (cls + 1)[:, None, None, None], 0), cls


def scores(u8: torch.Tensor, maps: torch.Tensor, digits: torch.Tensor, clf) -> dict:
    seg, cls = segment(u8, clf)
    ious = []
    for k in range(LABELS):
        a, b = seg == k, maps == k
        union = (a | b).sum().item()
        if union:
            ious.append((a & b).sum().item() / union)
    stroke_a, stroke_b = seg > 0, maps > 0
    return {"pixel_acc": (seg == maps).float().mean().item(), "mIoU": float(np.mean(ious)),
            "stroke_IoU": (stroke_a & stroke_b).sum().item() / max((stroke_a | stroke_b).sum().item(), 1),
            "class_acc": (cls == digits).float().mean().item(), "FD": frechet(u8, clf)}


def frechet(u8: torch.Tensor, clf) -> float:
    from hifigan.metrics.frechet import frechet_distance, gaussian_fit
    from hifigan.metrics.mnist_classifier import features_and_logits, to_input
    feats, _ = features_and_logits(clf.net, to_input(u8))
    return float(frechet_distance(gaussian_fit(feats.double().numpy()), (clf.real_mu, clf.real_sigma)))


@torch.no_grad()
def synthesize(G, maps: torch.Tensor) -> torch.Tensor:
    from hifigan.sampling.grid import to_uint8
    G.eval()
    z = torch.randn(len(maps), G.z_dim, generator=torch.Generator().manual_seed(0)) if G.use_vae else None
    out = [to_uint8(G(None if z is None else z[i:i + 100], maps[i:i + 100])) for i in range(0, len(maps), 100)]
    return torch.cat(out).permute(0, 3, 1, 2).contiguous()  # uint8 [n, 1, R, R]


def measure(run_dir: Path) -> dict:
    from hifigan.checkpoint import build_net, load_generator, resolve
    from hifigan.config import load_config
    from hifigan.metrics.mnist_classifier import load_classifier
    from hifigan.registry import GENERATORS
    torch.set_num_threads(2)
    G = load_generator(run_dir, "cpu")
    cfg = load_config(run_dir / "config.yaml")
    x, maps, digits = held_out_pairs(cfg)
    clf = load_classifier(cfg.data.resolution)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        G0 = GENERATORS.get(cfg.G.name)(cfg.G.cfg)
    ckpt = resolve(run_dir)
    state = torch.load(ckpt / "state.pt", weights_only=True)
    rows = {"G_ema (trained)": scores(synthesize(G, maps), maps, digits, clf),
            "G at initialisation": scores(synthesize(G0, maps), maps, digits, clf),
            "real held-out digits": scores(x, maps, digits, clf)}
    return {"run": str(run_dir), "step": int(state["step"]), "kimg": state["nimg"] / 1000, "maps": len(maps),
            "rows": rows}


def table(result: dict) -> str:
    lines = [f"{result['maps']} held-out maps; G_ema after step {result['step']} ({result['kimg']:.1f} kimg)", "",
             "| images | pixel_acc | mIoU | stroke_IoU | class_acc | FD |", "|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['pixel_acc']:.3f} | {r['mIoU']:.3f} | {r['stroke_IoU']:.3f} | "
                     f"{r['class_acc']:.3f} | {r['FD']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default=str(ROOT / "configs" / "mnist_spade.yaml"))
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget")
    p.add_argument("--run", default=None, help="measure this finished run instead of training")
    p.add_argument("--json", default=None, help="also write the result to this JSON file")
    a = p.parse_args(argv)
    if a.run:
        run = Path(a.run)
        result = measure(run)
    else:
        from zoo import train_for
        config = Path(a.config)
        run = ROOT / "runs" / "zoo" / config.stem
        run.parent.mkdir(parents=True, exist_ok=True)
        wall = train_for(config, run, a.minutes)
        result = measure(run)
        result["wall_s"] = wall
    print(table(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
