"""kernels/conv2d: the first-order-only autograd of a convolution (what auto uses on CUDA) against
torch's own, to second order, and the R1 graph it builds."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hifigan.kernels import dispatch
from hifigan.kernels.conv2d import conv2d, no_weight_grad
from hifigan.kernels.conv2d.first_order import conv2d_first_order
from hifigan.kernels.conv2d.reference import conv2d_reference

# (x shape, w shape, geom = (transposed, stride, padding, output_padding, groups))
GEOMS = {
    "same3x3": ((2, 4, 6, 5), (3, 4, 3, 3), (False, (1, 1), (1, 1), (0, 0), 1)),
    "stride2-valid": ((2, 4, 7, 6), (3, 4, 3, 3), (False, (2, 2), (0, 0), (0, 0), 1)),
    "grouped-1x1": ((2, 4, 5, 5), (6, 2, 1, 1), (False, (1, 1), (0, 0), (0, 0), 2)),
    "transposed-stride2": ((2, 4, 4, 3), (4, 3, 3, 3), (True, (2, 2), (0, 0), (1, 0), 1)),
}


@pytest.mark.parametrize("name", list(GEOMS))
def test_first_order_autograd_matches_finite_differences_to_second_order(name):
    xs, ws, geom = GEOMS[name]
    torch.manual_seed(0)
    x = torch.randn(xs, dtype=torch.float64, requires_grad=True)
    w = torch.randn(ws, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w: conv2d_first_order(x, w, geom)  # noqa: E731
    torch.testing.assert_close(fn(x, w), conv2d_reference(x, w, geom))
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


def _r1_weight_grad(conv, x, w, geom):
    """d/dw of ||d sum(conv(x, w)^2) / dx||^2, the shape of R1's weight gradient."""
    x = x.detach().requires_grad_()
    with no_weight_grad():
        g, = torch.autograd.grad(conv(x, w, geom).square().sum(), x, create_graph=True)
    return torch.autograd.grad(g.square().sum(), w)[0]


def test_r1_style_second_order_uses_first_order_convolutions_only():
    from torch.profiler import ProfilerActivity, profile
    xs, ws, geom = GEOMS["stride2-valid"]
    torch.manual_seed(0)
    x, w = torch.randn(xs), torch.randn(ws, requires_grad=True)
    counts = {}
    for name, conv in (("reference", conv2d_reference), ("first_order", conv2d_first_order)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            dw = _r1_weight_grad(conv, x, w, geom)
        counts[name] = sum(e.count for e in prof.key_averages() if e.key == "aten::_convolution_double_backward")
        if name == "reference":
            expect = dw
    torch.testing.assert_close(dw, expect, rtol=1e-4, atol=1e-4)
    assert counts["reference"] > 0 and counts["first_order"] == 0, counts


def test_no_weight_grad_skips_only_the_weight_gradient():
    xs, ws, geom = GEOMS["same3x3"]
    x = torch.randn(xs, requires_grad=True)
    w = torch.randn(ws, requires_grad=True)
    with no_weight_grad():
        dx, dw = torch.autograd.grad(conv2d_first_order(x, w, geom).sum(), [x, w], allow_unused=True)
    assert dw is None
    torch.testing.assert_close(dx, torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), x)[0])
    dw = torch.autograd.grad(conv2d_first_order(x, w, geom).sum(), w)[0]  # back on outside the context
    torch.testing.assert_close(dw, torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), w)[0])


def test_dispatch_uses_torch_autograd_on_cpu_and_has_no_triton_conv():
    x, w = torch.randn(1, 2, 4, 4), torch.randn(3, 2, 3, 3)
    assert dispatch.resolve("conv2d", "auto", [x, w], ("cuda",)) == "reference"
    torch.testing.assert_close(conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))
    with pytest.raises(dispatch.KernelUnavailable, match="no impl='triton'"):
        conv2d(x, w, impl="triton")
    with pytest.raises(dispatch.KernelUnavailable, match="needs CUDA tensors"):
        conv2d(x, w, impl="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_first_order_conv_matches_torch_on_cuda():
    for xs, ws, geom in GEOMS.values():
        x = torch.randn(xs, device="cuda", requires_grad=True)
        w = torch.randn(ws, device="cuda", requires_grad=True)
        torch.testing.assert_close(_r1_weight_grad(conv2d_first_order, x, w, geom),
                                   _r1_weight_grad(conv2d_reference, x, w, geom), rtol=1e-3, atol=1e-3)


def test_under_autocast_the_fast_path_gets_one_dtype_through_double_backward():
    """Autocast does not reach inside a custom autograd Function (nor any backward): without the dispatcher's
    casts, a bf16 activation met an fp32 weight in the first-order convolution's backward ("Input type
    (CUDABFloat16Type) and weight type (torch.cuda.FloatTensor) should be the same" on a GPU). With them it
    runs forward, backward and R1's double backward under autocast, like torch's own convolution there."""
    xs, ws, geom = GEOMS["same3x3"]
    x = torch.randn(xs, requires_grad=True)
    w = torch.randn(ws, requires_grad=True)

    def r1_w_grad(fn):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = fn(x, w)
            (gx,) = torch.autograd.grad(y.float().square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), w)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the failure the casts prevent
        y = conv2d_first_order(x, w, geom)
    with pytest.raises(RuntimeError, match="should be the same|same dtype|expected"):
        torch.autograd.grad(y.float().sum(), x)
    fast = r1_w_grad(lambda x, w: conv2d_first_order(*dispatch.autocast_args((x, w, geom))))
    ref = r1_w_grad(lambda x, w: F.conv2d(x, w, padding=1))
    assert fast.dtype == w.dtype == torch.float32  # the weight's gradient comes back in its own dtype
    torch.testing.assert_close(fast, ref, rtol=0.05, atol=0.05 * float(ref.abs().max()))
