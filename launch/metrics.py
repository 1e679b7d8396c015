#!/usr/bin/env python
"""Quality figures of a checkpoint's generator, or between two image sets.

    python launch/metrics.py runs/mnist_dcgan [--metrics mnist_fd] [--samples 10000] [--json]
    python launch/metrics.py runs/ffhq --metrics fid50k_full,kid50k_full,is50k --inception inception-2015-12-05.pt
    python launch/metrics.py runs/ffhq --metrics pr50k3_full,ppl2_wend --vgg vgg16.pt [--lpips vgg.pth]
    python launch/metrics.py --real A --fake B --metrics fid,kid,is,pr --inception FILE [--vgg FILE] --json

A run's metrics use its G_ema (else G) and, for the protocol metrics, the data of the recipe the
checkpoint stores (real features cached under $XDG_CACHE_HOME/hifigan/metrics). A and B: an image
folder or an .npz with `images` uint8 [N, H, W, C]. Prints one `name value` line per figure (or one
JSON object with --json).

mnist_fd: Frechet distance to the 5,000 real digits in a small digit classifier's features, with
mnist_coverage and mnist_cond_acc (see hifigan/metrics/mnist_fd.py). The protocol metrics
(fid50k_full, kid50k_full, pr50k3_full, ppl2_wend, is50k) follow StyleGAN2-ADA's definitions; their
weights come from local files only: the FID Inception (inception-2015-12-05.pt or
pt_inception-2015-12-05-6726825d.pth) and VGG16 (vgg16.pt or torchvision's vgg16-397923af.pth).
FD shrinks with more samples: compare equal --samples.
"""
import argparse
import sys

from hifigan.errors import UserError, run_main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="run dir, checkpoint folder or G_ema.safetensors")
    p.add_argument("--real", help="image folder or .npz of real images (with --fake, instead of a checkpoint)")
    p.add_argument("--fake", help="image folder or .npz of generated images")
    p.add_argument("--metrics", default=None, help="comma-separated names (default mnist_fd; with --real/--fake: fid,kid)")
    p.add_argument("--samples", type=int, default=None, help="generated images (default: each metric's own)")
    p.add_argument("--inception", default=None, help="FID Inception weights file (TorchScript or state dict)")
    p.add_argument("--vgg", default=None, help="VGG16 weights file (precision/recall, PPL)")
    p.add_argument("--lpips", default=None, help="LPIPS linear heads file (PPL; default: unit weights)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="images per KID subset (--real/--fake)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (--real/--fake)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    a = p.parse_args(argv)

    def body():
        from hifigan.metrics import format_lines
        if a.real is not None or a.fake is not None:
            if a.checkpoint is not None or a.fake is None:
                raise UserError("give either a checkpoint or --fake B (with --real A for fid, kid and pr), not both")
            from hifigan.metrics.compare import compare_image_sets
            names = [n.strip() for n in (a.metrics or "fid,kid").split(",") if n.strip()]
            for flag, v in (("--kid-subset-size", a.kid_subset_size), ("--kid-subsets", a.kid_subsets)):
                if v < 1:
                    raise UserError(f"{flag} {v}: must be a positive integer")
            figures = compare_image_sets(a.real, a.fake, names, a.inception, a.vgg, a.device or "cpu",
                                         a.kid_subsets, a.kid_subset_size)
            print(format_lines(figures, a.json))
            return
        if a.checkpoint is None:
            raise UserError("give a run dir or checkpoint, or --real A --fake B")
        if a.samples is not None and a.samples < 2:
            raise UserError(f"--samples {a.samples}: need at least 2 generated images")
        from hifigan.metrics import metrics_from_checkpoint
        from hifigan.registry import METRICS
        names = [n.strip() for n in (a.metrics or "mnist_fd").split(",") if n.strip()]
        options = {}
        for name in names:
            known = {f for f in METRICS.config(name).__dataclass_fields__}
            opts = {k: v for k, v in (("inception", a.inception), ("vgg", a.vgg), ("lpips", a.lpips))
                    if v is not None and k in known}
            if opts:
                options[name] = opts
        print(format_lines(metrics_from_checkpoint(a.checkpoint, names, a.samples, a.device, options), a.json))
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
