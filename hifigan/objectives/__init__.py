"""The GAN math per family. Importing this package registers every objective."""
from hifigan.objectives import biggan, conditional, gan, infogan, sgan, stylegan, wgan  # noqa: F401
from hifigan.objectives import energy, spade, vae  # noqa: F401
from hifigan.objectives import lapgan  # noqa: F401
from hifigan.objectives.base import Batch, Objective  # noqa: F401
