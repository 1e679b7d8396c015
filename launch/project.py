#!/usr/bin/env python
"""Project images into a StyleGAN's latent space (Image2StyleGAN, arXiv:1904.03189; Image2StyleGAN++,
arXiv:1911.11544; StyleGAN2's projector, arXiv:1912.04958 appendix D) and edit the embeddings.

    python launch/project.py RUN --target face.png --space w+ --steps 1000 --loss mse --out proj
    python launch/project.py RUN --target photos/ --out proj                    # one folder per image
    python launch/project.py RUN --seed 0-2 --space w+ --noise --out proj       # G's own images
    python launch/project.py RUN --target x.png --preset image2stylegan --vgg vgg16.pth --out proj
    python launch/project.py RUN --target x.png --mask known.png --out proj     # inpainting (white = known)
    python launch/project.py RUN --crossover a/projection.npz b/projection.npz --layer 4 --out mix
    python launch/project.py RUN --style-transfer content.npz style.npz --layer 9 --out st

OUT gets projection.npz (ws [num_ws, w_dim], image uint8 [H, W, C], noise_* with --noise),
reconstruction.png, target.png and metrics.json (psnr, ssim, lpips with --lpips, seconds, steps,
space); --video adds progress.mp4, --tensorboard OUT/tensorboard. Targets are converted to G's
channels and resolution. Perceptual losses read local weight files only (--vgg, --lpips).
Presets: image2stylegan, image2stylegan++, stylegan2; options given explicitly override them.
"""
import argparse
import sys

from hifigan.errors import run_main


def parse_args(argv=None) -> argparse.Namespace:
    from hifigan.project.config import LOSSES, PRESETS, SPACES, W_AVG_SOURCES
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="run dir, checkpoint folder or G_ema.safetensors of a StyleGAN1/2")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--target", help="image file (PNG, JPG, ...) or a folder of images")
    p.add_argument("--seed", dest="seeds", metavar="SEEDS", help="project G's own image for these seeds (e.g. 0 or 0-2)")
    p.add_argument("--mask", help="PNG: white = known pixels, the rest is left to G (inpainting); resized to G's size")
    p.add_argument("--class", dest="cls", type=int, default=None, help="class label of a conditional generator")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    o = p.add_argument_group("optimization (default: the preset's, else W+, 1000 steps, Adam lr 0.1 with ramps, MSE)")
    o.add_argument("--preset", choices=sorted(PRESETS), default=None, help="a published schedule")
    o.add_argument("--space", choices=SPACES, default=None, help="z, w (one w for all layers) or w+ (one per layer)")
    o.add_argument("--steps", type=int, default=None, help="optimization steps of the latent")
    o.add_argument("--lr", type=float, default=None, help="Adam's peak learning rate")
    o.add_argument("--betas", type=lambda s: tuple(float(x) for x in s.split(",")), default=None, metavar="B1,B2")
    o.add_argument("--eps", type=float, default=None, help="Adam's epsilon")
    o.add_argument("--lr-rampup", type=float, default=None, metavar="SHARE", help="linear warm-up share of the steps")
    o.add_argument("--lr-rampdown", type=float, default=None, metavar="SHARE", help="cosine ramp-down share of the steps")
    o.add_argument("--loss", choices=LOSSES, default=None, help="pixel MSE, VGG perceptual, LPIPS, or sums")
    o.add_argument("--mse-weight", type=float, default=None)
    o.add_argument("--perceptual-weight", type=float, default=None)
    o.add_argument("--vgg", metavar="FILE", help="local VGG-16 weights (torchvision's vgg16-397923af.pth): the "
                                                 "perceptual and LPIPS losses' features")
    o.add_argument("--lpips", metavar="FILE", help="local LPIPS linear heads (lpips' vgg.pth); with --vgg: the lpips "
                                                   "figure in metrics.json and a calibrated --loss lpips")
    o.add_argument("--w-avg", choices=W_AVG_SOURCES, default=None, help="start: estimated mean w, or G's stored one")
    o.add_argument("--w-avg-samples", type=int, default=None, help="z samples for the w_avg estimate (10000)")
    o.add_argument("--init-seed", type=int, default=None, help="seed of the w_avg estimate, the latent noise, the z start")
    n = p.add_argument_group("noise maps")
    n.add_argument("--noise", nargs="?", const="default", default=None, choices=["default", "off", "joint", "after"],
                   help="optimize the noise maps: joint (with the latent, StyleGAN2) or after (alone, Image2StyleGAN++)")
    n.add_argument("--noise-steps", type=int, default=None, help="steps of the noise-only phase (--noise after)")
    n.add_argument("--noise-lr", type=float, default=None, help="Adam's lr in the noise-only phase")
    n.add_argument("--noise-reg", type=float, default=None, help="weight of the noise autocorrelation penalty")
    n.add_argument("--no-noise-renorm", dest="renormalize_noise", action="store_const", const=False, default=None,
                   help="do not renormalize the noise maps after each step")
    n.add_argument("--latent-noise", type=float, default=None, help="noise on w at the start, times sigma_w")
    n.add_argument("--latent-noise-ramp", type=float, default=None, metavar="SHARE")
    g = p.add_argument_group("outputs")
    g.add_argument("--video", nargs="?", const="progress.mp4", default=None, metavar="PATH",
                   help="progress video (default OUT/progress.mp4; .gif works too)")
    g.add_argument("--fps", type=float, default=20.0)
    g.add_argument("--tensorboard", action="store_true", help="loss, PSNR and SSIM per logged step to OUT/tensorboard")
    g.add_argument("--log-every", type=int, default=None, help="steps between logged statistics and video frames")
    e = p.add_argument_group("edits of two projections (projection.npz files or their folders)")
    e.add_argument("--crossover", nargs=2, metavar=("A", "B"), help="coarse styles from A, fine ones from B")
    e.add_argument("--style-transfer", nargs=2, metavar=("CONTENT", "STYLE"), help="content layers < K, style >= K")
    e.add_argument("--local-edit", nargs=2, metavar=("A", "B"), help="B's image inside --mask, A's outside")
    e.add_argument("--layer", "--crossover-layer", dest="layer", type=int, default=None, metavar="K",
                   help="first style taken from B")
    return p.parse_args(argv)


def config(a: argparse.Namespace):
    from hifigan.project.config import PRESETS, make_config
    noise = a.noise
    if noise == "default":
        noise = PRESETS.get(a.preset, {}).get("noise", "joint")
        noise = "joint" if noise == "off" else noise
    return make_config(a.preset, space=a.space, steps=a.steps, lr=a.lr, betas=a.betas, eps=a.eps,
                       lr_rampup=a.lr_rampup, lr_rampdown=a.lr_rampdown, loss=a.loss, mse_weight=a.mse_weight,
                       perceptual_weight=a.perceptual_weight, noise=noise, noise_steps=a.noise_steps,
                       noise_lr=a.noise_lr, noise_reg=a.noise_reg, renormalize_noise=a.renormalize_noise,
                       latent_noise=a.latent_noise, latent_noise_ramp=a.latent_noise_ramp, w_avg=a.w_avg,
                       w_avg_samples=a.w_avg_samples, seed=a.init_seed, log_every=a.log_every)


def main(argv=None) -> int:
    a = parse_args(argv)

    def body():
        from hifigan.errors import UserError
        from hifigan.project.run import RunOptions, run_edit, run_projection
        cfg = config(a)
        opts = RunOptions(target=a.target, seeds=a.seeds, mask=a.mask, cls=a.cls, vgg=a.vgg, lpips=a.lpips,
                          video=a.video, fps=a.fps, tensorboard=a.tensorboard, device=a.device)
        edits = [(k, v) for k, v in [("crossover", a.crossover), ("style_transfer", a.style_transfer),
                                      ("local_edit", a.local_edit)] if v]
        if len(edits) > 1:
            raise UserError("give one edit at a time (--crossover, --style-transfer or --local-edit)")
        if edits:
            kind, (src_a, src_b) = edits[0]
            run_edit(a.checkpoint, a.out, kind, src_a, src_b, a.layer, cfg, opts)
        else:
            run_projection(a.checkpoint, a.out, cfg, opts, a.preset)
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
