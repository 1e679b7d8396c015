"""The vanilla MLP GAN (Goodfellow et al. 2014, "Generative Adversarial Nets", arXiv:1406.2661).

G maps z (optionally concatenated with a one-hot class, as in Mirza & Osindero 2014, cGAN,
arXiv:1411.1784) through fully connected layers to a tanh image; D maps the flattened image
(plus the one-hot class) through fully connected LeakyReLU layers to one logit.

Every D family shares `HeadedDiscriminator`'s optional heads: an auxiliary classifier on the
penultimate features (AC-GAN: Odena et al. 2017, "Conditional Image Synthesis with Auxiliary
Classifier GANs", arXiv:1610.09585; SGAN's K + 1 classes: Odena 2016, "Semi-Supervised Learning
with Generative Adversarial Networks", arXiv:1606.01583), its penultimate features (read by InfoGAN's Q, Chen et al. 2016,
"InfoGAN", arXiv:1606.03657, when Q shares D's trunk), and spectral normalization
(hifigan/nn/spectral.py). Q (`CodePosterior`) and the separate classifier C of cGAN + classifier are
networks of their own (registries Q_NETWORKS, CLASSIFIERS), with their own optimizers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.codes import apply_codes, check_codes
from hifigan.nn.init import dcgan_init
from hifigan.nn.spectral import apply_spectral_norm
from hifigan.schema import MAX_CHANNELS, MAX_CLASSES, MAX_WIDTH, bounded, resolution_field
from hifigan.registry import CLASSIFIERS, DISCRIMINATORS, GENERATORS, Q_NETWORKS


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
        z_dim: int = bounded(100, ge=1, le=MAX_WIDTH)          # input latent size
        hidden: list[int] = bounded(default_factory=lambda: [256, 512, 1024], ge=1, le=MAX_WIDTH)  # hidden layer widths
        batch_norm: bool = False                               # batch norm after each hidden layer
        resolution: int = resolution_field(28, 1, pow2=False)  # output H = W
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)      # output image channels
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)    # > 0: conditional on a class label
        code_cat: int = bounded(0, ge=0, le=MAX_CLASSES)       # InfoGAN codes: z's last code_cat + code_cont
        code_cont: int = bounded(0, ge=0, le=MAX_WIDTH)        # entries (hifigan/nn/codes.py)
        init_std: float = bounded(0.02, gt=0)                  # N(0, std) weight init

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


HEADS = ("logits", "class_logits", "features")  # the order D(..., heads=True) returns

# D keys that became networks of their own: an old recipe gets a one-line error saying what to write
MOVED_TO_Q = ("InfoGAN's Q is network Q now: drop D.q_cat / q_cont / q_separate and add a section "
              "Q: {arch: <D's arch>, q_cat: 10, q_cont: 2, trunk: shared (own for a separate trunk)} "
              "with optim.Q, and list Q in the Qmain phase's nets")
MOVED_TO_C = ("the separate classifier is network C now: drop D.classifier_classes and add a section "
              "C: {arch: <D's arch>, classes: 10} with optim.C, and train it in phase Cmain with nets: [C]")
MOVED = {"q_cat": MOVED_TO_Q, "q_cont": MOVED_TO_Q, "q_separate": MOVED_TO_Q, "classifier_classes": MOVED_TO_C}


def check_heads_config(cfg) -> None:
    """Validate the head fields every D family shares (called from each D Config's __post_init__)."""
    if cfg.aux_classes < 0 or cfg.aux_classes == 1:
        raise ValueError(f"aux_classes must be 0 (off) or >= 2 classes, got {cfg.aux_classes}")


class HeadedDiscriminator(nn.Module):
    """The D interface the classic families share. A family builds `self.net` (its trunk, then the layer
    that gives one logit as the last element) and defines `d_input(img, c)`.

    D(img, c) -> logits [N]. D(img, c, heads=True) -> dict of every head; heads=("features", ...) -> only those:
      logits [N]; class_logits [N, aux_classes] (AC-GAN / SGAN classifier on the shared trunk);
      features [N, feature_dim]: the flattened penultimate features (what InfoGAN's Q reads when it
      shares D's trunk, hifigan.models Q networks with trunk: shared).
    """

    def init_heads(self, cfg, features: int) -> None:
        """Add the configured heads; `features` is the width of the flattened penultimate features."""
        self.aux_classes, self.feature_dim = cfg.aux_classes, features
        # some phases use only part of D (the aux classifier alone, or the features for Q): DDP must be told
        self.partial = True
        self.class_head = nn.Linear(features, cfg.aux_classes) if cfg.aux_classes else None

    def head_names(self) -> tuple[str, ...]:
        """The heads this D has, in the order D(..., heads=True) returns them."""
        return tuple(h for h in HEADS if h != "class_logits" or self.aux_classes)

    def _select(self, heads) -> tuple[str, ...]:
        have = self.head_names()
        if heads is True:
            return have
        names = (heads,) if isinstance(heads, str) else tuple(heads)
        for h in names:
            if h not in have:
                raise ValueError(f"D has no head {h!r} (this D has: {', '.join(have)}); set D.aux_classes")
        return tuple(h for h in have if h in names)

    def forward(self, img, c=None, heads=False):
        if heads is False or heads is None:
            return self.net(self.d_input(img, c)).flatten()  # [N]
        names = self._select(heads)
        h = self.net[:-1](self.d_input(img, c))  # penultimate features
        out = {"features": h.flatten(1)}  # [N, feature_dim]
        if "logits" in names:
            out["logits"] = self.net[-1](h).flatten()  # [N]
        if "class_logits" in names:
            out["class_logits"] = self.class_head(out["features"])  # [N, aux_classes]
        return {k: out[k] for k in names}

    def spectral_norm_(self) -> None:
        """Spectral norm on every conv / linear weight of the discriminator."""
        for name in ("net", "class_head"):
            if getattr(self, name) is not None:
                setattr(self, name, apply_spectral_norm(getattr(self, name)))


def check_q_config(cfg) -> None:
    if cfg.q_cat < 0 or cfg.q_cat == 1 or cfg.q_cont < 0 or cfg.q_cat + cfg.q_cont == 0:
        raise ValueError(f"q_cat must be 0 or >= 2 and q_cont >= 0, with at least one code (got {cfg.q_cat}, "
                         f"{cfg.q_cont})")
    if cfg.trunk not in ("shared", "own"):
        raise ValueError(f"trunk must be shared (on D's features) or own, got {cfg.trunk!r}")


class CodePosterior(nn.Module):
    """InfoGAN's Q (Chen et al. 2016, arXiv:1606.03657, section 5): the code posterior's parameters.

    trunk: shared -> Q(features [N, F]) reads D's penultimate features (D(img, c, heads="features")), so
    Q is just its heads and D's trunk learns from the mutual-information loss (the paper's choice);
    trunk: own -> Q(img, c) has a trunk of its own with D's architecture and shares nothing with D.
    Returns {"q_cat": [N, q_cat] logits, "q_cont": [N, q_cont] means} (the configured ones).
    """

    def init_q(self, cfg, trunk: nn.Module | None, features: int) -> None:
        self.q_cat, self.q_cont = cfg.q_cat, cfg.q_cont
        self.on_features, self.in_features = trunk is None, features
        self.trunk = trunk
        self.q_cat_head = nn.Linear(features, cfg.q_cat) if cfg.q_cat else None
        self.q_cont_head = nn.Linear(features, cfg.q_cont) if cfg.q_cont else None

    def finish(self, cfg) -> None:
        dcgan_init(self, cfg.init_std)
        if cfg.spectral_norm:
            for name in ("trunk", "q_cat_head", "q_cont_head"):
                if getattr(self, name) is not None:
                    setattr(self, name, apply_spectral_norm(getattr(self, name)))

    def forward(self, x, c=None):
        h = x if self.trunk is None else self.trunk(self.d_input(x, c)).flatten(1)  # [N, in_features]
        out = {}
        if self.q_cat_head is not None:
            out["q_cat"] = self.q_cat_head(h)
        if self.q_cont_head is not None:
            out["q_cont"] = self.q_cont_head(h)
        return out


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
        hidden: list[int] = bounded(default_factory=lambda: [1024, 512, 256], ge=1, le=MAX_WIDTH)  # hidden layer widths
        dropout: float = bounded(0.0, ge=0, lt=1)              # dropout after each hidden layer
        resolution: int = resolution_field(28, 1, pow2=False)  # input H = W
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)      # input image channels
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)    # > 0: conditional on a class label
        init_std: float = bounded(0.02, gt=0)                  # N(0, std) weight init
        aux_classes: int = bounded(0, ge=0, le=MAX_CLASSES)    # > 0: auxiliary classifier on the last hidden layer (AC-GAN; SGAN: K + 1)
        spectral_norm: bool = False                            # spectral normalization of every D weight (SN-GAN)
        MOVED = MOVED

        def __post_init__(self):
            check_heads_config(self)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        pixels = cfg.channels * cfg.resolution ** 2
        layers, width = _mlp_trunk(cfg, pixels + cfg.num_classes)
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))
        self.init_heads(cfg, width)
        dcgan_init(self, cfg.init_std)
        if cfg.spectral_norm:
            self.spectral_norm_()

    def d_input(self, img, c=None):
        x = img.flatten(1)
        y = _one_hot(c, self.num_classes, x)
        return x if y is None else torch.cat([x, y], dim=1)  # [N, C * H * W (+ num_classes)]



@CLASSIFIERS.register("mlp")
class MLPClassifier(nn.Module):
    """img [N, C, H, W] -> class logits [N, classes]: the MLP D's trunk without the class input (a classifier
    predicts the class: it never sees it). cGAN + classifier's C."""

    @dataclass(kw_only=True)
    class Config:
        classes: int = bounded(10, le=MAX_CLASSES)         # number of classes (>= 2)
        hidden: list[int] = bounded(default_factory=lambda: [1024, 512, 256], ge=1, le=MAX_WIDTH)  # hidden layer widths
        dropout: float = bounded(0.0, ge=0, lt=1)              # dropout after each hidden layer
        resolution: int = resolution_field(28, 1, pow2=False)  # input H = W
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)      # input image channels
        init_std: float = bounded(0.02, gt=0)                  # N(0, std) weight init

        def __post_init__(self):
            if self.classes < 2:
                raise ValueError(f"classes must be >= 2, got {self.classes}")

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, self.classes = cfg, cfg.classes
        layers, width = _mlp_trunk(cfg, cfg.channels * cfg.resolution ** 2)
        self.net = nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, cfg.classes))
        dcgan_init(self, cfg.init_std)

    def forward(self, img):
        return self.net(img)  # [N, classes]


@Q_NETWORKS.register("mlp")
class MLPCodePosterior(CodePosterior):
    """InfoGAN's Q for the MLP D: heads on D's last hidden layer (trunk: shared) or on an MLP trunk of its own."""

    @dataclass(kw_only=True)
    class Config:
        q_cat: int = bounded(10, le=MAX_CLASSES)           # categorical code logits (0 = none)
        q_cont: int = bounded(2, le=MAX_WIDTH)             # continuous code means (0 = none)
        trunk: str = "shared"                                  # shared: heads on D's features (the paper); own: a trunk like D's of its own
        hidden: list[int] = bounded(default_factory=lambda: [1024, 512, 256], ge=1, le=MAX_WIDTH)  # D's hidden widths (both trunks)
        dropout: float = bounded(0.0, ge=0, lt=1)              # dropout after each hidden layer (own trunk)
        resolution: int = resolution_field(28, 1, pow2=False)  # input H = W
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)      # input image channels
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)    # own trunk: conditional on a class label like D
        init_std: float = bounded(0.02, gt=0)                  # N(0, std) weight init
        spectral_norm: bool = False                            # spectral normalization of every Q weight

        def __post_init__(self):
            check_q_config(self)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, self.num_classes = cfg, cfg.num_classes
        layers, width = _mlp_trunk(cfg, cfg.channels * cfg.resolution ** 2 + cfg.num_classes)
        self.init_q(cfg, nn.Sequential(*layers) if cfg.trunk == "own" else None, width)
        self.finish(cfg)

    d_input = MLPDiscriminator.d_input
