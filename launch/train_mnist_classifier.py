#!/usr/bin/env python
"""Train (or find in the cache) the digit classifier behind the mnist_fd metric and print its
held-out accuracy and the real data's FD floor.

    python launch/train_mnist_classifier.py [--resolution 32] [--seed 0] [--force]

Deterministic given (resolution, seed); cached as safetensors under $HIFIGAN_CACHE_DIR, else
$XDG_CACHE_HOME/hifigan, else ~/.cache/hifigan. --force retrains and replaces the cached file.
"""
import argparse
import sys

from hifigan.errors import run_main
from hifigan.metrics.mnist_classifier import load_classifier


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=32, help="input size (the metric's default is 32)")
    p.add_argument("--seed", type=int, default=0, help="training seed (the metric's default is 0)")
    p.add_argument("--force", action="store_true", help="retrain even if a cached classifier exists")
    a = p.parse_args(argv)

    def body():
        clf = load_classifier(a.resolution, a.seed, force=a.force, verbose=False)
        print(f"{'trained' if clf.trained else 'cached'}: {clf.path}")
        print(f"held-out accuracy (500 real digits): {clf.held_out_acc:.4f}")
        print(f"real-data FD floor (500 held-out vs 4,500 training digits): {clf.fd_floor:.4f}")
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
