"""The SPADE objective (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive
Normalization", arXiv:1903.07291, section 3 and appendix A): label map -> image.

    D: mean over the num_D scales of  E[max(0, 1 - D_k(x, m))] + E[max(0, 1 + D_k(G(z, m), m))]
    G: mean over scales of -E[D_k(G(z, m), m)]
       + lambda_feat / num_D * sum_k sum_i L1(D_k^(i)(G(z, m), m), D_k^(i)(x, m))      feature matching
       + lambda_vgg * sum_j w_j L1(VGG19_j(G(z, m)), VGG19_j(x))                           perceptual
       + lambda_kld * KL(N(mu, sigma^2) || N(0, I))                                        with the encoder

m is the batch's label map (Batch.c, int64 [n, 1 or 2, H, W]); the generator and the discriminator
turn it into one-hot channels (plus instance edges) themselves. Feature matching (pix2pixHD, Wang et
al. 2018, arXiv:1711.11585) compares every intermediate feature of each scale except the logits, the
real features detached. The perceptual loss uses VGG19's relu1_1 .. relu5_1 with weights
1/32, 1/16, 1/8, 1/4, 1, the images fed in [-1, 1] as the reference does (no ImageNet normalization;
a one-channel image is repeated to three). With the image encoder E (use_vae), z = mu + sigma * eps.

Where we differ from NVlabs/SPADE: the KL term is the per-sample KL (summed over z's dimensions)
averaged over the batch; the reference sums it over the batch too, so its weight grows with the
batch size (lambda_kld 0.05 at the reference's batch of 1 per GPU equals ours). Ours is the same for
any batch split across ranks and accumulation steps. D is updated before G on the same reals
(the reference updates G first); one step is the same pair of updates.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hifigan.errors import UserError
from hifigan.objectives.base import Batch, Objective, PhaseSpec
from hifigan.config import PhaseConfig
from hifigan.registry import OBJECTIVES
from hifigan.schema import bounded

VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def hinge_d(logits_real: list, logits_fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """D's hinge terms (real, fake), each averaged over pixels, samples and then scales."""
    real = sum(F.relu(1 - r).mean() for r in logits_real) / len(logits_real)
    fake = sum(F.relu(1 + f).mean() for f in logits_fake) / len(logits_fake)
    return real, fake


def hinge_g(logits_fake: list) -> torch.Tensor:
    return -sum(f.mean() for f in logits_fake) / len(logits_fake)


def feature_matching(feats_fake: list, feats_real: list) -> torch.Tensor:
    """sum over scales k and intermediate features i (the logits excluded) of L1(fake, real.detach()),
    divided by the number of scales: pix2pixHD / SPADE's GAN feature loss before its lambda."""
    total = feats_fake[0][0].new_zeros(())
    for fake_k, real_k in zip(feats_fake, feats_real):
        for f, r in zip(fake_k[:-1], real_k[:-1]):
            total = total + F.l1_loss(f, r.detach())
    return total / len(feats_fake)


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over dimensions, averaged over samples."""
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)).mean()


def perceptual(vgg, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """sum_j w_j L1(VGG19_j(fake), VGG19_j(real).detach()) on images in [-1, 1] (module docstring)."""
    if fake.shape[1] == 1:
        fake, real = fake.expand(-1, 3, -1, -1), real.expand(-1, 3, -1, -1)
    with torch.no_grad():
        feats_real = vgg(real)
    return sum(w * F.l1_loss(f, r) for w, f, r in zip(VGG_WEIGHTS, vgg(fake), feats_real))


def logits(features: list) -> list:
    """The patch logits of each scale: the last of its features."""
    return [f[-1] for f in features]


@OBJECTIVES.register("spade")
class SPADEObjective(Objective):
    """Dmain (hinge) on the drawn pairs, then Gmain (hinge, feature matching, VGG, KL) on the same pairs."""

    @dataclass(kw_only=True)
    class Config:
        lambda_feat: float = bounded(10.0, ge=0, le=1e6)   # feature matching weight (0 = off)
        lambda_vgg: float = bounded(10.0, ge=0, le=1e6)    # VGG19 perceptual loss weight (0 = off; > 0 needs vgg)
        vgg: typing.Optional[str] = None                   # torchvision's vgg19-dcbb9e9d.pth; nothing downloads
        lambda_kld: float = bounded(0.05, ge=0, le=1e6)    # KL weight of the encoder's posterior (with E)

    phases = {
        "Dmain": PhaseSpec("d_main", requires=("G", "D"), trains=("D",), reals="draw"),
        "Gmain": PhaseSpec("g_main", requires=("G", "D"), trains=("G", "E"), reals="reuse"),
    }
    default_phases = [PhaseConfig(name="Dmain", nets=["D"]), PhaseConfig(name="Gmain", nets=["G"])]

    def __init__(self, cfg):
        super().__init__(cfg)
        self.vgg = None

    def load_files(self) -> None:
        """VGG19 for the perceptual loss (lambda_vgg > 0) from the local file objective.vgg."""
        if self.cfg.lambda_vgg > 0 and self.vgg is None:
            if not self.cfg.vgg:
                raise UserError("objective.lambda_vgg > 0 needs objective.vgg: the path of torchvision's "
                                "vgg19-dcbb9e9d.pth (nothing is downloaded); or set objective.lambda_vgg=0")
            from hifigan.nn.vgg import load_vgg19
            self.vgg = load_vgg19(self.cfg.vgg)

    def check_nets(self, nets: dict) -> None:
        G = nets["G"]
        if not getattr(G, "label_nc", 0):
            raise UserError(f"G: objective 'spade' synthesizes from label maps; {G.registry_name!r} takes none "
                            f"(use G.arch=spade)")
        for name in ("D",) + (("E",) if "E" in nets else ()):
            if getattr(nets[name], "label_nc", getattr(G, "label_nc", 0)) != G.label_nc:
                raise UserError(f"{name}.label_nc={nets[name].label_nc} but G.label_nc={G.label_nc}; set both to "
                                f"the data's number of labels")
        if getattr(nets["D"], "instance", False) != getattr(G, "instance", False):
            raise UserError(f"D.instance={nets['D'].instance} but G.instance={G.instance}; set them alike")
        if G.use_vae and "E" not in nets:
            raise UserError("G.use_vae=true needs the image encoder: add an E section (arch: spade_encoder) and "
                            "train it with G (phases Gmain nets [G, E])")
        if "E" in nets and not G.use_vae:
            raise UserError("E: the encoder is used only with G.use_vae=true; set it or remove the E section")
        if "E" in nets and nets["E"].z_dim != G.z_dim:
            raise UserError(f"E.z_dim={nets['E'].z_dim} but G.z_dim={G.z_dim}; set them alike")

    def latents(self, nets: dict, batch: Batch):
        """(z, mu, logvar): z from the encoder's posterior (reparameterized) with E, else None."""
        if "E" not in nets:
            return None, None, None
        mu, logvar = nets["E"](batch.img)
        z = mu + (0.5 * logvar).exp() * batch.rand.randn(mu.shape[1])
        return z, mu, logvar

    def d_main(self, nets: dict, batch: Batch):
        with torch.no_grad():
            z, _, _ = self.latents(nets, batch)
            fake = nets["G"](z, batch.c)
        out_real, out_fake = nets["D"](batch.img, batch.c), nets["D"](fake, batch.c)
        real, fake_term = hinge_d(logits(out_real), logits(out_fake))
        stats = {"D_real": torch.stack([r.mean() for r in logits(out_real)]).mean().detach(),
                 "D_fake": torch.stack([f.mean() for f in logits(out_fake)]).mean().detach()}
        return {"real": real, "fake": fake_term}, stats

    def g_main(self, nets: dict, batch: Batch):
        z, mu, logvar = self.latents(nets, batch)
        fake = nets["G"](z, batch.c)
        out_fake = nets["D"](fake, batch.c)
        losses = {"adv": hinge_g(logits(out_fake))}
        if self.cfg.lambda_feat:
            with torch.no_grad():
                out_real = nets["D"](batch.img, batch.c)
            losses["feat"] = self.cfg.lambda_feat * feature_matching(out_fake, out_real)
        if self.vgg is not None:
            self.vgg.to(fake.device)
            losses["vgg"] = self.cfg.lambda_vgg * perceptual(self.vgg, fake, batch.img)
        if mu is not None:
            losses["kld"] = self.cfg.lambda_kld * kl_normal(mu, logvar)
        return losses, {"D_fake_for_G": torch.stack([f.mean() for f in logits(out_fake)]).mean().detach()}
