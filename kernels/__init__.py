"""hifigan.kernels: fused ops (bias + activation, modulated convolution) beside plain PyTorch references.

Installed as `hifigan.kernels` (setup.py maps this folder there) so it never shadows a PyPI
distribution named `kernels`. The ops arrive with issue [4/5].
"""
