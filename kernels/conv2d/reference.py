"""Plain convolution, torch's own autograd: the specification for kernels/conv2d."""
from __future__ import annotations

import torch.nn.functional as F


def conv2d_reference(x, w, geom):
    """geom = (transposed, stride, padding, output_padding, groups); w as F.conv2d / F.conv_transpose2d take it."""
    transposed, stride, padding, output_padding, groups = geom
    if transposed:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, output_padding=output_padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)
