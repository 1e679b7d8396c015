"""The GAN math per family. Importing this package registers every objective."""
from hifigan.objectives import gan, stylegan, wgan  # noqa: F401
from hifigan.objectives.base import Batch, Objective  # noqa: F401
