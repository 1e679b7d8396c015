"""Autoencoder discriminators for the energy-based GANs: the energy of an image is how badly D
reconstructs it.

- EBGAN (Zhao, Mathieu and LeCun 2017, "Energy-based Generative Adversarial Network",
  arXiv:1609.03126): D is an autoencoder, energy = reconstruction error; the pull-away term
  acts on the encoder's code of generated images.
- BEGAN (Berthelot, Schumm and Metz 2017, "BEGAN: Boundary Equilibrium Generative Adversarial
  Networks", arXiv:1703.10717): the same autoencoder D with an L1 reconstruction loss, an
  embedding of size h between encoder and decoder, ELU activations and no batch norm.

The encoder is DCGAN's D trunk (Radford et al. 2016, arXiv:1511.06434): stride-2 4x4 convolutions
doubling the channels while halving the size, down to a base map of at most 7x7 (4x4 from 32 px,
7x7 from 28 px), then a linear layer to the code. The decoder mirrors it (a linear layer back to
the base map, stride-2 transposed convolutions) like DCGAN's G.

The output layer is linear, not tanh (`tanh_output: false`): both papers' decoders end in a plain
convolution, and since the reconstruction is scored against images in [-1, 1] whose MNIST
background is exactly -1, a tanh could reach those pixels only asymptotically (a vanishing
gradient, and a floor under every energy that depends on the input's background share).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from hifigan.nn.init import dcgan_init
from hifigan.schema import MAX_CHANNELS, MAX_WIDTH, bounded, resolution_field
from hifigan.registry import DISCRIMINATORS

NORMS = ("batch", "none")  # normalization choices of the encoder / decoder layers


def base_size(resolution: int) -> int:
    """Side of the encoder's last map: the resolution halved while it is even and above 4."""
    r = resolution
    while r % 2 == 0 and r > 4:
        r //= 2
    if resolution < 8 or r > 7:
        raise ValueError(f"resolution must be >= 8 and halve down to at most 7 px (e.g. 28, 32, 64), "
                         f"got {resolution}")
    return r


def _levels(resolution: int) -> int:
    """Stride-2 stages between the image and the base map."""
    return (resolution // base_size(resolution)).bit_length() - 1


def _check_norm(norm: str) -> bool:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm == "batch"


def _act(kind: str, encoder: bool) -> nn.Module:
    if kind == "elu":
        return nn.ELU(inplace=True)
    return nn.LeakyReLU(0.2, inplace=True) if encoder else nn.ReLU(inplace=True)


def conv_encoder(resolution: int, channels: int, width: int, max_width: int, norm: str = "batch",
                 activation: str = "lrelu") -> tuple[nn.Sequential, int]:
    """DCGAN-D-like trunk: img [N, channels, res, res] -> features [N, flat]; returns (trunk, flat)."""
    n, base = _levels(resolution), base_size(resolution)
    batch_norm = _check_norm(norm)
    ch = [min(width * 2 ** i, max_width) for i in range(n)]  # res/2 ... base
    layers = [nn.Conv2d(channels, ch[0], 4, 2, 1), _act(activation, True)]  # no norm on the first layer (DCGAN)
    for c_in, c_out in zip(ch[:-1], ch[1:]):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm)]
        layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
        layers += [_act(activation, True)]
    layers += [nn.Flatten()]
    return nn.Sequential(*layers), ch[-1] * base * base


class _Decoder(nn.Module):
    """code [N, code_dim] -> img [N, channels, res, res]: linear to the base map, then DCGAN-G-like."""

    def __init__(self, code_dim: int, resolution: int, channels: int, width: int, max_width: int,
                 norm: str, activation: str, tanh_output: bool):
        super().__init__()
        n, base = _levels(resolution), base_size(resolution)
        batch_norm = _check_norm(norm)
        ch = [min(width * 2 ** i, max_width) for i in reversed(range(n))]  # base ... res/2
        self.base_shape = (ch[0], base, base)
        self.fc = nn.Linear(code_dim, ch[0] * base * base)
        layers = [nn.BatchNorm2d(ch[0])] if batch_norm else []
        layers += [_act(activation, False)]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
            layers += [_act(activation, False)]
        layers += [nn.ConvTranspose2d(ch[-1], channels, 4, 2, 1)]
        layers += [nn.Tanh()] if tanh_output else []
        self.net = nn.Sequential(*layers)

    def forward(self, code):
        return self.net(self.fc(code).view(-1, *self.base_shape))  # [N, C, H, W]


@DISCRIMINATORS.register("autoencoder")
class AutoencoderDiscriminator(nn.Module):
    """img [N, channels, res, res] -> reconstruction [N, channels, res, res] (EBGAN / BEGAN's D)."""

    @dataclass(kw_only=True)
    class Config:
        resolution: int = resolution_field(32, 8, pow2=False)            # input H = W: >= 8, halving down to at most 7 px (28, 32, 64, ...)
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)                # image channels
        width: int = bounded(64, ge=1, le=MAX_WIDTH)                     # channels of the encoder's first layer; doubled per level towards the code
        max_width: int = bounded(1024, ge=1, le=MAX_WIDTH)               # cap on any layer's channels
        code_dim: int = bounded(64, ge=1, le=MAX_WIDTH)                  # size of the code between encoder and decoder (BEGAN's h)
        norm: str = field(default="batch", metadata={"choices": NORMS})  # after every conv but the first: batch (DCGAN, EBGAN) or none (BEGAN)
        activation: str = field(default="lrelu", metadata={"choices": ("lrelu", "elu")})  # lrelu: LeakyReLU(0.2) encoder, ReLU decoder (DCGAN); elu: ELU throughout (BEGAN)
        tanh_output: bool = False                                        # tanh on the reconstruction; off: a linear output (both papers, see module doc)
        init_std: float = bounded(0.02, gt=0)                            # N(0, std) weight init (DCGAN)

        def __post_init__(self):
            base_size(self.resolution)
            _check_norm(self.norm)
            if self.code_dim < 1 or self.width < 1:
                raise ValueError(f"code_dim and width must be >= 1, got {self.code_dim} and {self.width}")

    num_classes = 0  # unconditional: the energy of an image alone

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.code_dim = cfg.code_dim
        trunk, flat = conv_encoder(cfg.resolution, cfg.channels, cfg.width, cfg.max_width, cfg.norm,
                                   cfg.activation)
        self.encoder = nn.Sequential(trunk, nn.Linear(flat, cfg.code_dim))
        self.decoder = _Decoder(cfg.code_dim, cfg.resolution, cfg.channels, cfg.width, cfg.max_width,
                                cfg.norm, cfg.activation, cfg.tanh_output)
        dcgan_init(self, cfg.init_std)

    def forward(self, img, c=None, heads=False):
        """The reconstruction [N, C, H, W]; with `heads`, {"recon": [N, C, H, W], "code": [N, code_dim]}."""
        code = self.encoder(img)  # [N, code_dim]
        recon = self.decoder(code)
        return {"recon": recon, "code": code} if heads else recon
