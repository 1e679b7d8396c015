"""hifigan: a distributed, scalable PyTorch system for training high-resolution GANs."""
__version__ = "0.1.0"
