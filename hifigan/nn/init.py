"""Weight initialisation schemes.

DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", arXiv:1511.06434): all weights from N(0, 0.02); batch-norm
scales from N(1, 0.02) and shifts 0, as the common implementations do.

BigGAN (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image Synthesis",
arXiv:1809.11096, section 3.1 / appendix C): orthogonal init (Saxe et al. 2014, arXiv:1312.6120) of
every conv, linear and embedding weight; SAGAN (Zhang et al. 2019, arXiv:1805.08318) as
BigGAN-PyTorch launches it: Xavier / Glorot uniform (Glorot & Bengio 2010). Biases keep PyTorch's
default. A spectrally normalized layer's power iteration restarts from the new weight.
"""
from torch import nn

from hifigan.nn.spectral import SpectralNorm

INIT_SCHEMES = ("ortho", "xavier", "normal")  # init_weights choices (normal: N(0, 0.02))


def dcgan_init(module: nn.Module, std: float = 0.02) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def init_weights(module: nn.Module, scheme: str = "ortho") -> None:
    """Re-initialize the weight of every nn.Conv2d / nn.Linear / nn.Embedding inside `module`."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {scheme!r}")
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            if scheme == "ortho":
                nn.init.orthogonal_(m.weight)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
    for m in module.modules():
        if isinstance(m, SpectralNorm):
            m.reestimate_()
