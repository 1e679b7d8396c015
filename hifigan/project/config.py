"""What a projection does, as one typed value: the latent space, the optimizer and its learning-rate
ramps, the loss terms, the noise-map options, and the published schedules as presets.

Presets (`PRESETS`; explicit options override a preset's values):
- `image2stylegan`: Abdal et al. 2019, "Image2StyleGAN: How to Embed Images Into the StyleGAN Latent
  Space?" (arXiv:1904.03189), section 4: W+, Adam lr 0.01, betas (0.9, 0.999), eps 1e-8, 5000 steps,
  VGG-16 perceptual loss (conv1_1, conv1_2, conv3_2, conv4_2) plus pixel MSE, both weight 1, no ramps.
- `image2stylegan++`: Abdal et al. 2020, "Image2StyleGAN++: How to Edit the Embedded Images?"
  (arXiv:1911.11544), section 3 / algorithm 1: W+ with perceptual + MSE first (noise fixed), then
  the noise maps alone with MSE (ws fixed); masks restrict each loss to the known pixels.
- `stylegan2`: Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"
  (arXiv:1912.04958), appendix D: W (one w for all layers) and the noise maps jointly, 1000 steps,
  Adam lr 0.1 ramped up linearly over the first 5% and down by a cosine over the last 25%, LPIPS,
  noise regularization weight 1e5, noise maps renormalized after every step, and Gaussian noise of
  0.05 * sigma_w * ramp^2 added to w, the ramp falling from 1 to 0 over the first 75% of the steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from hifigan.errors import UserError

SPACES = ("z", "w", "w+")
LOSSES = ("mse", "perceptual", "mse+perceptual", "lpips", "mse+lpips")
NOISE_SCHEDULES = ("off", "joint", "after")
W_AVG_SOURCES = ("estimate", "stored")


@dataclass(frozen=True, kw_only=True)
class ProjectConfig:
    space: str = "w+"                  # z, w (one w broadcast to every layer) or w+ (one w per layer)
    steps: int = 1000                  # optimization steps of the latent (the first phase)
    lr: float = 0.1                    # Adam's peak learning rate
    betas: tuple = (0.9, 0.999)        # Adam's betas
    eps: float = 1e-8                  # Adam's epsilon
    lr_rampup: float = 0.05            # share of the steps over which lr rises linearly from 0 (0: none)
    lr_rampdown: float = 0.25          # share of the last steps over which lr falls to 0 by a cosine (0: none)
    loss: str = "mse"                  # mse, perceptual (VGG-16 features), mse+perceptual, lpips, mse+lpips
    mse_weight: float = 1.0            # weight of the pixel MSE (images in [-1, 1])
    perceptual_weight: float = 1.0     # weight of the perceptual / LPIPS term
    noise: str = "off"                 # noise maps: off (G's own, fixed), joint (with the latent), after (alone, second phase)
    noise_steps: int = 0               # steps of the noise-only phase (noise = after)
    noise_lr: float = 5.0              # Adam's lr for the noise maps in the noise-only phase (Image2StyleGAN++: 5)
    noise_reg: float = 1e5             # weight of the multi-scale autocorrelation penalty on the noise maps
    renormalize_noise: bool = True     # noise maps back to zero mean, unit variance after every step
    latent_noise: float = 0.0          # Gaussian noise on w, times sigma_w, at step 0 (StyleGAN2: 0.05)
    latent_noise_ramp: float = 0.75    # share of the steps over which that noise falls (quadratically) to 0
    w_avg: str = "estimate"            # the start: estimate (mean w of w_avg_samples z) or stored (G's running mean)
    w_avg_samples: int = 10000         # z samples for the w_avg / sigma_w estimate
    seed: int = 0                      # seeds the w_avg estimate, the latent noise and the z start
    log_every: int = 10                # steps between logged statistics (TensorBoard, progress frames)

    def check(self) -> ProjectConfig:
        """One-line UserError for the first bad value; returns self."""
        def bad(flag, value, want):
            raise UserError(f"{flag} {value!r}: {want}")
        if self.space not in SPACES:
            bad("--space", self.space, f"choose from {', '.join(SPACES)}")
        if self.loss not in LOSSES:
            bad("--loss", self.loss, f"choose from {', '.join(LOSSES)}")
        if self.noise not in NOISE_SCHEDULES:
            bad("--noise", self.noise, f"choose from {', '.join(NOISE_SCHEDULES)}")
        if self.w_avg not in W_AVG_SOURCES:
            bad("--w-avg", self.w_avg, f"choose from {', '.join(W_AVG_SOURCES)}")
        if not isinstance(self.steps, int) or self.steps <= 0:
            bad("--steps", self.steps, "give a positive number of optimization steps")
        if self.noise == "after" and self.noise_steps <= 0:
            bad("--noise-steps", self.noise_steps, "--noise after needs a positive number of noise-only steps")
        if self.noise_steps < 0:
            bad("--noise-steps", self.noise_steps, "give 0 or more steps")
        for flag, v in [("--lr", self.lr), ("--noise-lr", self.noise_lr)]:
            if not (math.isfinite(v) and v > 0):
                bad(flag, v, "give a finite learning rate > 0")
        for flag, v in [("--mse-weight", self.mse_weight), ("--perceptual-weight", self.perceptual_weight),
                        ("--noise-reg", self.noise_reg), ("--latent-noise", self.latent_noise), ("--eps", self.eps)]:
            if not (math.isfinite(v) and v >= 0):
                bad(flag, v, "give a finite number >= 0")
        for flag, v in [("--lr-rampup", self.lr_rampup), ("--lr-rampdown", self.lr_rampdown),
                        ("--latent-noise-ramp", self.latent_noise_ramp)]:
            if not (math.isfinite(v) and 0 <= v <= 1):
                bad(flag, v, "give a share of the steps in [0, 1]")
        if len(self.betas) != 2 or not all(math.isfinite(b) and 0 <= b < 1 for b in self.betas):
            bad("--betas", self.betas, "give two numbers in [0, 1), e.g. 0.9,0.999")
        if self.w_avg_samples < 1:
            bad("--w-avg-samples", self.w_avg_samples, "give a positive number of samples")
        if self.log_every < 1:
            bad("--log-every", self.log_every, "give a positive number of steps")
        return self

    @property
    def uses_mse(self) -> bool:
        return self.loss in ("mse", "mse+perceptual", "mse+lpips")

    @property
    def perceptual_kind(self) -> str | None:
        """'vgg', 'lpips' or None: which perceptual network the loss needs."""
        return "lpips" if "lpips" in self.loss else "vgg" if "perceptual" in self.loss else None


PRESETS: dict[str, dict] = {
    "image2stylegan": dict(space="w+", steps=5000, lr=0.01, betas=(0.9, 0.999), eps=1e-8, lr_rampup=0.0,
                           lr_rampdown=0.0, loss="mse+perceptual", mse_weight=1.0, perceptual_weight=1.0,
                           noise="off", latent_noise=0.0),
    "image2stylegan++": dict(space="w+", steps=5000, lr=0.01, betas=(0.9, 0.999), eps=1e-8, lr_rampup=0.0,
                             lr_rampdown=0.0, loss="mse+perceptual", mse_weight=1.0, perceptual_weight=1.0,
                             noise="after", noise_steps=3000, noise_lr=5.0, noise_reg=0.0, renormalize_noise=False,
                             latent_noise=0.0),
    "stylegan2": dict(space="w", steps=1000, lr=0.1, betas=(0.9, 0.999), eps=1e-8, lr_rampup=0.05,
                      lr_rampdown=0.25, loss="lpips", mse_weight=1.0, perceptual_weight=1.0, noise="joint",
                      noise_reg=1e5, latent_noise=0.05, latent_noise_ramp=0.75),
}


def make_config(preset: str | None = None, **overrides) -> ProjectConfig:
    """A preset's values (or the defaults), then every override that is not None; checked."""
    if preset is not None and preset not in PRESETS:
        raise UserError(f"--preset {preset!r}: choose from {', '.join(PRESETS)}")
    known = {f.name for f in fields(ProjectConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown projection options {unknown}")
    cfg = replace(ProjectConfig(), **PRESETS.get(preset, {}))
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None}).check()


def lr_at(cfg: ProjectConfig, t: float, peak: float) -> float:
    """Learning rate at progress t in [0, 1]: linear warm-up over `lr_rampup`, cosine ramp-down over the
    last `lr_rampdown` (StyleGAN2 appendix D); constant `peak` with both ramps 0."""
    ramp = 1.0
    if cfg.lr_rampdown > 0:
        ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if cfg.lr_rampup > 0:
        ramp *= min(1.0, t / cfg.lr_rampup)
    return peak * ramp


def latent_noise_at(cfg: ProjectConfig, t: float) -> float:
    """Scale (times sigma_w) of the noise added to w at progress t: latent_noise * max(0, 1 - t / ramp)^2."""
    if cfg.latent_noise <= 0 or cfg.latent_noise_ramp <= 0:
        return 0.0
    return cfg.latent_noise * max(0.0, 1.0 - t / cfg.latent_noise_ramp) ** 2
