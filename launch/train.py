#!/usr/bin/env python
"""Train a GAN from a YAML recipe.

    python launch/train.py configs/mnist_dcgan.yaml [key.sub=value ...] [--dry-run]
    accelerate launch launch/train.py configs/stylegan2_ffhq.yaml      # several processes / nodes
    deepspeed --num_gpus 8 launch/train.py configs/stylegan2_ffhq.yaml backend.name=deepspeed

Rerunning the same command continues the run in its run_dir from the latest checkpoint.
--dry-run (anywhere on the line) builds and checks everything, prints the config and one
parameter count per network, and writes nothing; data missing on disk is only a warning then.
"""
import argparse
import sys

from hifigan.errors import run_main
from hifigan.train.api import train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML recipe, e.g. configs/mnist_dcgan.yaml")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.batch_size=128 run_dir=runs/x")
    p.add_argument("--dry-run", action="store_true", help="build everything, print the config and parameter counts, exit")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # the deepspeed launcher's
    args = p.parse_intermixed_args(argv)
    return run_main(train, args.config, args.overrides, dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
