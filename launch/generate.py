#!/usr/bin/env python
"""Sample images from a checkpoint: one PNG per seed, grid.png and samples.npz (key `images`,
uint8 [N, H, W, C]).

    python launch/generate.py runs/mnist_dcgan --seeds 0-63 --out samples [--class 3]
"""
import argparse
import sys

from hifigan.errors import run_main
from hifigan.sample import generate_from_checkpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="run dir, checkpoint folder or .safetensors file")
    p.add_argument("--seeds", default="0-63", help="seeds, e.g. 0-63 or 1,5,9-11 (one image each)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--class", dest="cls", type=int, default=None,
                   help="class label for conditional models (default: seed %% num_classes)")
    p.add_argument("--batch", type=int, default=64, help="images per forward pass")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = p.parse_args(argv)
    return run_main(generate_from_checkpoint, args.checkpoint, args.seeds, args.out, args.cls, args.batch, args.device)


if __name__ == "__main__":
    sys.exit(main())
