"""SAGAN (Zhang et al. 2019, "Self-Attention Generative Adversarial Networks", arXiv:1805.08318) as
BigGAN-PyTorch's SAGAN launch script builds it: BigGAN's residual G and D (hifigan/models/biggan.py)
at ch 64 with self-attention at 64x64 in both networks (section 5: attention on the middle-to-high
level feature maps works best), spectral normalization in G as well as D (section 4.1), but
- no hierarchical z: all of z (128) enters G's linear layer;
- no shared class embedding: each conditional batch norm embeds the class id into its own gain and
  bias (nn.Embedding(num_classes, C), not spectrally normalized);
- Xavier init and spectral-norm epsilon 1e-8.
The projection discriminator (Miyato & Koyama 2018, arXiv:1802.05637) is BigGAN's.
Parameter counts at 128x128, ch 64, 1000 classes: G 42,017,412, D 39,448,258.
"""
from __future__ import annotations

from dataclasses import dataclass

from hifigan.models.biggan import (DiscriminatorFields, GeneratorFields, ResNetDiscriminator, ResNetGenerator,
                                   check_discriminator, check_generator, init_field)
from hifigan.registry import DISCRIMINATORS, GENERATORS
from hifigan.schema import MAX_WIDTH, bounded


@GENERATORS.register("sagan")
class SAGANGenerator(ResNetGenerator):
    """SAGAN G, 128x128 ch 64 by default. z [N, dim_z] (+ c [N]) -> img [N, channels, res, res] in [-1, 1]."""

    @dataclass(kw_only=True)
    class Config(GeneratorFields):
        ch: int = bounded(64, ge=1, le=MAX_WIDTH)      # channel multiplier (block widths are multiples of it)
        dim_z: int = bounded(128, ge=1, le=MAX_WIDTH)  # latent size, all of it into the linear layer
        sn_eps: float = bounded(1e-8, gt=0)            # spectral norm's normalization epsilon
        init: str = init_field("xavier")               # weight init: xavier (the SAGAN script), ortho, normal

        def __post_init__(self):
            check_generator(self)

    def __init__(self, cfg: Config):
        super().__init__(cfg, shared_dim=0, hier=False)


@DISCRIMINATORS.register("sagan")
class SAGANDiscriminator(ResNetDiscriminator):
    """SAGAN D, 128x128 ch 64 by default. img [N, channels, res, res] (+ c [N]) -> logits [N]."""

    @dataclass(kw_only=True)
    class Config(DiscriminatorFields):
        ch: int = bounded(64, ge=1, le=MAX_WIDTH)      # channel multiplier
        sn_eps: float = bounded(1e-8, gt=0)            # spectral norm's normalization epsilon
        init: str = init_field("xavier")               # weight init: xavier (the SAGAN script), ortho, normal

        def __post_init__(self):
            check_discriminator(self)
