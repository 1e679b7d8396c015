"""Every backend, registered by importing its module: the BACKENDS registry loads this one.

train/backend.py holds the protocols and the Accelerate backend, train/deepspeed_backend.py the
DeepSpeed one (DeepSpeed itself is imported only when that backend is built).
"""
from hifigan.train import backend, deepspeed_backend  # noqa: F401
