#!/usr/bin/env python
"""Quality figures of a checkpoint's generator (G_ema if present, else G).

    python launch/metrics.py runs/mnist_dcgan [--metrics mnist_fd] [--samples 10000] [--json]

Prints one `name value` line per figure (or one JSON object with --json). mnist_fd: the Frechet
distance to the 5,000 real digits in a small digit classifier's features (lower is better; the real
data's own figure is mnist_fd_floor), mnist_coverage: classes predicted for at least 1% of the
samples, mnist_cond_acc (10-class conditional G): share classified as the class asked for. The
classifier is trained on first use (seconds) and cached under $XDG_CACHE_HOME/hifigan
(see launch/train_mnist_classifier.py). FD shrinks with more samples: compare equal --samples.
"""
import argparse
import sys

from hifigan.errors import run_main
from hifigan.metrics import format_lines, metrics_from_checkpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="run dir, checkpoint folder or G_ema.safetensors")
    p.add_argument("--metrics", default="mnist_fd", help="comma-separated metric names (default mnist_fd)")
    p.add_argument("--samples", type=int, default=None, help="generated images (default: the metric's, 10000)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    a = p.parse_args(argv)

    def body():
        names = [n.strip() for n in a.metrics.split(",") if n.strip()]
        print(format_lines(metrics_from_checkpoint(a.checkpoint, names, a.samples, a.device), a.json))
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
