#!/usr/bin/env python
"""Convert an official StyleGAN2 checkpoint into a hifigan run directory.

    python launch/convert.py network-snapshot-025000.pkl --out runs/ffhq-converted    # stylegan2-ada-pytorch / stylegan3
    python launch/convert.py 550000.pt --out runs/ffhq-rosinality                      # rosinality/stylegan2-pytorch
    python launch/generate.py runs/ffhq-converted --seeds 0-7 --seed-rng numpy --out samples

Nothing in the file is run: NVIDIA pickles are read by a restricted unpickler (the Python source they
embed is never compiled), rosinality checkpoints by torch.load(weights_only=True). OUT gets
config.yaml and checkpoints/step-00000000 (G, G_ema, D; no optimizer state): generate from it, or
continue training with `python launch/train.py OUT/config.yaml run_dir=OUT data.shards=...`.
"""
import argparse
import sys

from hifigan.convert import convert
from hifigan.errors import run_main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="network-snapshot-*.pkl (NVIDIA) or a rosinality .pt checkpoint")
    p.add_argument("--out", required=True, help="output run directory (new or empty)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    a = p.parse_args(argv)
    return run_main(convert, a.source, a.out, force=a.force)


if __name__ == "__main__":
    sys.exit(main())
