"""VGG19's convolutions (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", arXiv:1409.1556) in torchvision's layout, for perceptual losses (SPADE's: the
relu1_1 .. relu5_1 activations). Weights from torchvision's `vgg19-dcbb9e9d.pth` as a local file:
only its `features.N.*` tensors up to relu5_1 are used; nothing downloads."""
from __future__ import annotations

import torch
import torch.nn as nn

from hifigan.weights import load_into, load_state, weights_path


def conv_stack(cfg: list) -> list[nn.Module]:
    """torchvision's VGG `features` layers for a width table (ints: 3x3 conv + ReLU, "M": 2x2 max pool)."""
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return layers


CFG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
VGG19_FILES = "vgg19-dcbb9e9d.pth (torchvision's VGG19 state dict)"
# torchvision VGG19 indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1: SPADE's perceptual layers
VGG19_RELU1 = (1, 6, 11, 20, 29)


class VGG19Features(nn.Module):
    """torchvision's VGG19 `features` up to relu5_1; forward(x) -> the five relu{k}_1 activations."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*conv_stack(CFG19)[:VGG19_RELU1[-1] + 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG19_RELU1:
                out.append(x)
        return out


def load_vgg19(path, option: str = "objective.vgg") -> VGG19Features:
    """VGG19's convolutions from torchvision's state dict file, in eval mode without gradients."""
    p = weights_path(path, "VGG19", VGG19_FILES, option)
    net = VGG19Features()
    keep = set(net.state_dict())
    state = {k: v for k, v in load_state(p, "VGG19", VGG19_FILES).items() if k in keep or not k.startswith("features.")
             and not k.startswith("classifier.")}
    return load_into(net, state, p, "VGG19", VGG19_FILES)
