"""Model families, one a file. Importing this package registers every architecture."""
from hifigan.models import classic, dcgan, progan, stylegan, stylegan2  # noqa: F401
from hifigan.models import energy, vae  # noqa: F401
from hifigan.models import biggan, biggan_deep, sagan  # noqa: F401
from hifigan.models import lapgan  # noqa: F401
from hifigan.models import spade  # noqa: F401


def count_params(net) -> int:
    """Trainable-parameter count (parameters, not buffers), as papers and reference repos report it."""
    return sum(p.numel() for p in net.parameters())
