"""The vanilla MLP GAN (Goodfellow et al. 2014, "Generative Adversarial Nets", arXiv:1406.2661).

G maps z (optionally concatenated with a one-hot class, as in Mirza & Osindero 2014, cGAN,
arXiv:1411.1784) through fully connected layers to a tanh image; D maps the flattened image
(plus the one-hot class) through fully connected LeakyReLU layers to one logit.

Every D family shares `HeadedDiscriminator`'s optional heads: an auxiliary classifier on the
penultimate features (AC-GAN: Odena et al. 2017, "Conditional Image Synthesis with Auxiliary
Classifier GANs", arXiv:1610.09585; SGAN's K + 1 classes: Odena 2016, "Semi-Supervised Learning
with Generative Adversarial Networks", arXiv:1606.01583), InfoGAN's Q heads (Chen et al. 2016,
"InfoGAN", arXiv:1606.03657), a separate classifier network, and spectral normalization
(hifigan/nn/spectral.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.codes import apply_codes, check_codes
from hifigan.nn.init import dcgan_init
from hifigan.nn.spectral import apply_spectral_norm
from hifigan.registry import DISCRIMINATORS, GENERATORS


def _one_hot(c, num_classes: int, like: torch.Tensor):
    if num_classes == 0:
        return None
    if c is None:
        raise ValueError("this network is conditional: pass class labels c")
    return F.one_hot(c.long(), num_classes).to(like.dtype)


@GENERATORS.register("mlp")
class MLPGenerator(nn.Module):
    """Fully connected generator: z [N, z_dim] (+ c [N]) -> img [N, C, H, W] in [-1, 1]."""

    @dataclass(kw_only=True)
    class Config:
        z_dim: int = 100                                            # input latent size
        hidden: list[int] = field(default_factory=lambda: [256, 512, 1024])  # hidden layer widths
        batch_norm: bool = False                                    # batch norm after each hidden layer
        resolution: int = 28                                        # output H = W
        channels: int = 1                                           # output image channels
        num_classes: int = 0                                        # > 0: conditional on a class label
        code_cat: int = 0                                           # InfoGAN codes: z's last code_cat + code_cont
        code_cont: int = 0                                          # entries (hifigan/nn/codes.py)
        init_std: float = 0.02                                      # N(0, std) weight init

        def __post_init__(self):
            check_codes(self.z_dim, self.code_cat, self.code_cont)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        self.code_cat, self.code_cont = cfg.code_cat, cfg.code_cont
        self.img_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        layers, width = [], cfg.z_dim + cfg.num_classes
        for h in cfg.hidden:
            layers += [nn.Linear(width, h)]
            layers += [nn.BatchNorm1d(h)] if cfg.batch_norm else []
            layers += [nn.LeakyReLU(0.2)]
            width = h
        layers += [nn.Linear(width, cfg.channels * cfg.resolution ** 2), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self, cfg.init_std)

    def forward(self, z, c=None, codes=None):
        """codes: None (read from z) or (category [N] or None, continuous [N, code_cont] or None)."""
        z = apply_codes(z, self.code_cat, self.code_cont, *(codes or ()))
        y = _one_hot(c, self.num_classes, z)
        x = z if y is None else torch.cat([z, y], dim=1)
        return self.net(x).view(z.shape[0], *self.img_shape)  # [N, C, H, W]


HEADS = ("logits", "class_logits", "q_cat", "q_cont", "classifier_logits")  # the order D(..., heads=True) returns


def check_heads_config(cfg) -> None:
    """Validate the head fields every D family shares (called from each D Config's __post_init__)."""
    for name in ("aux_classes", "q_cat", "classifier_classes"):
        n = getattr(cfg, name)
        if n < 0 or n == 1:
            raise ValueError(f"{name} must be 0 (off) or >= 2 classes, got {n}")
    if cfg.q_cont < 0:
        raise ValueError(f"q_cont must be >= 0 (0 = off), got {cfg.q_cont}")
    if cfg.q_separate and not (cfg.q_cat or cfg.q_cont):
        raise ValueError("q_separate needs Q heads: set q_cat or q_cont > 0, or q_separate: false")


class HeadedDiscriminator(nn.Module):
    """The D interface every family shares. A family builds `self.net` (its trunk, then the layer that
    gives one logit as the last element) and defines `d_input(img, c)` and `classifier_input(img)`.

    D(img, c) -> logits [N]. D(img, c, heads=True) -> dict of every configured head; heads=("q_cat", ...)
    -> only those, running only the trunks they need:
      logits [N]; class_logits [N, aux_classes] (AC-GAN / SGAN classifier on the shared trunk);
      q_cat [N, q_cat] (categorical code logits), q_cont [N, q_cont] (continuous code means) for
      InfoGAN, on the shared trunk or on a trunk of their own (q_separate);
      classifier_logits [N, classifier_classes]: a separate classifier sharing no parameter with D.
    """

    def init_heads(self, cfg, features: int, make_trunk, make_classifier) -> None:
        """Add the configured heads; `features` is the width of the flattened penultimate features."""
        self.aux_classes, self.q_cat, self.q_cont = cfg.aux_classes, cfg.q_cat, cfg.q_cont
        self.classifier_classes = cfg.classifier_classes
        # a head that some phase leaves unused: DDP must look for unused parameters
        self.partial = bool(cfg.aux_classes or cfg.q_cat or cfg.q_cont or cfg.classifier_classes)
        self.q_net = make_trunk() if cfg.q_separate else None  # InfoGAN's Q: its own trunk
        self.class_head = nn.Linear(features, cfg.aux_classes) if cfg.aux_classes else None
        self.q_cat_head = nn.Linear(features, cfg.q_cat) if cfg.q_cat else None
        self.q_cont_head = nn.Linear(features, cfg.q_cont) if cfg.q_cont else None
        self.classifier = make_classifier() if cfg.classifier_classes else None

    def head_names(self) -> tuple[str, ...]:
        """The heads this D has, in the order D(..., heads=True) returns them."""
        sizes = {"logits": 1, "class_logits": self.aux_classes, "q_cat": self.q_cat, "q_cont": self.q_cont,
                 "classifier_logits": self.classifier_classes}
        return tuple(h for h in HEADS if sizes[h])

    def _select(self, heads) -> tuple[str, ...]:
        have = self.head_names()
        if heads is True:
            return have
        names = (heads,) if isinstance(heads, str) else tuple(heads)
        for h in names:
            if h not in have:
                raise ValueError(f"D has no head {h!r} (this D has: {', '.join(have)}); "
                                 f"configure it in D (aux_classes, q_cat, q_cont, classifier_classes)")
        return tuple(h for h in have if h in names)

    def forward(self, img, c=None, heads=False):
        if heads is False or heads is None:
            return self.net(self.d_input(img, c)).flatten()  # [N]
        names = self._select(heads)
        q_names = {"q_cat", "q_cont"} & set(names)
        out, h = {}, None
        if {"logits", "class_logits"} & set(names) or (q_names and self.q_net is None):
            h = self.net[:-1](self.d_input(img, c))  # penultimate features
            if "logits" in names:
                out["logits"] = self.net[-1](h).flatten()  # [N]
            if "class_logits" in names:
                out["class_logits"] = self.class_head(h.flatten(1))  # [N, aux_classes]
        if q_names:
            hq = (h if self.q_net is None else self.q_net(self.d_input(img, c))).flatten(1)
            if "q_cat" in names:
                out["q_cat"] = self.q_cat_head(hq)  # [N, q_cat]
            if "q_cont" in names:
                out["q_cont"] = self.q_cont_head(hq)  # [N, q_cont]
        if "classifier_logits" in names:
            out["classifier_logits"] = self.classifier(self.classifier_input(img))  # [N, classifier_classes]
        return {k: out[k] for k in names}

    def clipped_parameters(self):
        """The critic's parameters, which optim.D.weight_clip bounds; the separate classifier is not a
        critic (WGAN + classifier trains it by plain cross-entropy) and stays unclipped."""
        skip = set() if self.classifier is None else {id(p) for p in self.classifier.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def spectral_norm_(self) -> None:
        """Spectral norm on every conv / linear weight of the discriminator and Q paths; the separate
        classifier is a plain classifier and keeps its weights as they are."""
        for name in ("net", "q_net", "class_head", "q_cat_head", "q_cont_head"):
            if getattr(self, name) is not None:
                setattr(self, name, apply_spectral_norm(getattr(self, name)))


def _mlp_trunk(cfg, width: int) -> tuple[list[nn.Module], int]:
    layers = []
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        layers += [nn.Dropout(cfg.dropout)] if cfg.dropout > 0 else []
        width = h
    return layers, width


@DISCRIMINATORS.register("mlp")
class MLPDiscriminator(HeadedDiscriminator):
    """Fully connected discriminator: img [N, C, H, W] (+ c [N]) -> logits [N] (heads: HeadedDiscriminator)."""

    @dataclass(kw_only=True)
    class Config:
        hidden: list[int] = field(default_factory=lambda: [1024, 512, 256])  # hidden layer widths
        dropout: float = 0.0                                        # dropout after each hidden layer
        resolution: int = 28                                        # input H = W
        channels: int = 1                                           # input image channels
        num_classes: int = 0                                        # > 0: conditional on a class label
        init_std: float = 0.02                                      # N(0, std) weight init
        aux_classes: int = 0          # > 0: auxiliary classifier on the last hidden layer (AC-GAN; SGAN: K + 1)
        q_cat: int = 0                # > 0: InfoGAN categorical code logits head
        q_cont: int = 0               # > 0: InfoGAN continuous code means head
        q_separate: bool = False      # Q heads on a trunk of their own instead of D's
        classifier_classes: int = 0   # > 0: a separate MLP classifier (no parameter shared with D)
        spectral_norm: bool = False   # spectral normalization of every D / Q weight (SN-GAN)

        def __post_init__(self):
            check_heads_config(self)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        pixels = cfg.channels * cfg.resolution ** 2
        layers, width = _mlp_trunk(cfg, pixels + cfg.num_classes)
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))
        self.init_heads(cfg, width, lambda: nn.Sequential(*_mlp_trunk(cfg, pixels + cfg.num_classes)[0]),
                        lambda: nn.Sequential(*_mlp_trunk(cfg, pixels)[0], nn.Linear(width, cfg.classifier_classes)))
        dcgan_init(self, cfg.init_std)
        if cfg.spectral_norm:
            self.spectral_norm_()

    def d_input(self, img, c=None):
        x = img.flatten(1)
        y = _one_hot(c, self.num_classes, x)
        return x if y is None else torch.cat([x, y], dim=1)  # [N, C * H * W (+ num_classes)]

    def classifier_input(self, img):
        return img.flatten(1)  # the classifier predicts the class: it never sees it
