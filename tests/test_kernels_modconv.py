"""Modulated convolution: the Triton kernels against the grouped-conv reference (forward, backward,
double backward), the autograd formulas against finite differences, and the layer wiring. Without
CUDA the kernels run in the Triton CPU interpreter (conftest sets TRITON_INTERPRET=1)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hifigan.kernels import dispatch
from hifigan.kernels.modconv import fused, modulated_conv2d, modulated_conv2d_reference
from hifigan.nn.fir import setup_filter

pytest.importorskip("triton")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# max |fast - reference| / max |reference|, the reference in fp32 from the same (rounded) inputs
TOL = {torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 8e-3}
# (N, I, O, H, W, k, up, down, demodulate): StyleGAN2's 3x3 conv, its up=2 conv, toRGB, a down=2 conv
CASES = [(2, 5, 6, 7, 6, 3, 1, 1, True), (3, 17, 3, 5, 5, 1, 1, 1, False), (2, 6, 5, 5, 4, 3, 2, 1, True),
         (2, 4, 7, 9, 8, 3, 1, 2, True)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


@pytest.fixture(autouse=True)
def _ieee_fp32():
    """fp32 parity at 1e-5: no TF32 in the kernels (they follow cuDNN's flag) on a GPU."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = old


def _inputs(case, dtype, device, channels_last, seed):
    N, I, O, H, W, k, up, down, demod = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, I, H, W, generator=gen).to(device, dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(O, I, k, k, generator=gen).to(device)
    s = (torch.randn(N, I, generator=gen) * 0.5 + 1).to(device)
    f = setup_filter().to(device) if up + down > 2 else None
    return x, w, s, f


def _derivatives(fn, x, w, s, dy):
    """y, first-order gradients and the gradient of their squared norm (double backward)."""
    ins = [t.requires_grad_() for t in (x, w, s)]
    y = fn(*ins)
    grads = torch.autograd.grad(y, ins, dy, create_graph=True)
    pen = sum(g.float().square().sum() for g in grads)
    return y, grads, torch.autograd.grad(pen, ins)


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-12)).item()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(TOL), ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("case", CASES, ids=["3x3", "1x1-nodemod", "up2", "down2"])
def test_triton_matches_grouped_conv_reference_to_second_order(device, dtype, case):
    up, down, demod = case[6:]
    for channels_last in (False, True):
        x, w, s, f = _inputs(case, dtype, device, channels_last, seed=len(case) + up + 2 * down)
        y_ref = modulated_conv2d_reference(x.float(), w, s, demod, up, down, f)
        dy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(7)).to(device, dtype)
        fast = _derivatives(lambda x, w, s: modulated_conv2d(x, w, s, demod, up, down, f, impl="triton"),
                            x.detach().clone(), w.clone(), s.clone(), dy)
        ref = _derivatives(lambda x, w, s: modulated_conv2d_reference(x, w, s, demod, up, down, f),
                           x.detach().float(), w.clone(), s.clone(), dy.float())
        what = f"{case} {dtype} channels_last={channels_last}"
        assert fast[0].dtype == dtype and fast[0].shape == ref[0].shape, what
        if channels_last:
            assert fast[0].is_contiguous(memory_format=torch.channels_last), what
        for name, a, b in [("y", fast[0], ref[0])] + [(f"d{n}", *p) for n, p in zip("xws", zip(fast[1], ref[1]))] \
                + [(f"d2{n}", *p) for n, p in zip("xws", zip(fast[2], ref[2]))]:
            assert torch.isfinite(a).all(), f"{what} {name}"
            assert _rel(a, b) < TOL[dtype], f"{what} {name}: relative error {_rel(a, b):.3g} > {TOL[dtype]}"


def test_every_output_element_is_written_and_weight_gradient_matches_torch():
    from hifigan.kernels.modconv import triton_impl as lib
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 7).contiguous(memory_format=torch.channels_last)
    w = torch.randn(6, 5, 3, 3)
    s_in, s_out = torch.rand(2, 5) + 0.5, torch.rand(2, 6) + 0.5
    geom = (1, 1, 1, False, 6, 7)
    y = torch.full((2, 6, 6, 7), float("nan"))
    lib.conv(x, w, s_in, s_out, geom, out=y)
    expect = F.conv2d(x * s_in[:, :, None, None], w, padding=1) * s_out[:, :, None, None]
    torch.testing.assert_close(y, expect, rtol=1e-5, atol=1e-5)
    g = torch.randn(2, 6, 6, 7)
    dw = lib.wgrad(x, g, s_in, s_out, geom, (3, 3))
    expect = torch.nn.grad.conv2d_weight(x * s_in[:, :, None, None], w.shape, g * s_out[:, :, None, None], padding=1)
    torch.testing.assert_close(dw, expect, rtol=1e-5, atol=1e-4)


class TorchLib:
    """The two kernels written with torch convolutions, in float64: the autograd of fused.py is then
    checked against finite differences independently of Triton."""

    @staticmethod
    def conv(x, w, s_in, s_out, geom):
        stride, py, px, transposed, Ho, Wo = geom
        xs = x if s_in is None else x * s_in[:, :, None, None]
        if transposed:
            H, W = x.shape[2:]
            k = w.shape[2:]
            op = (Ho - ((H - 1) * stride - 2 * py + k[0]), Wo - ((W - 1) * stride - 2 * px + k[1]))
            y = F.conv_transpose2d(xs, w.transpose(0, 1), stride=stride, padding=(py, px), output_padding=op)
        else:
            y = F.conv2d(xs, w, stride=stride, padding=(py, px))
        return y if s_out is None else y * s_out[:, :, None, None]

    @staticmethod
    def wgrad(x, g, s_in, s_out, geom, kernel):
        with torch.enable_grad():
            w = torch.zeros(g.shape[1], x.shape[1], *kernel, dtype=x.dtype, requires_grad=True)
            y = TorchLib.conv(x.detach(), w, None if s_in is None else s_in.detach(), s_out, geom)
            return torch.autograd.grad(y, w, g.detach() if s_out is None else g.detach())[0]


@pytest.mark.parametrize("geom", [(1, 1, 1, False, 5, 4), (2, 0, 0, True, 11, 9), (2, 0, 0, False, 2, 1)],
                         ids=["same", "transposed-stride2", "stride2"])
def test_scaled_conv_autograd_matches_finite_differences(geom):
    torch.manual_seed(0)
    d = dict(dtype=torch.float64)
    x = torch.randn(2, 3, 5, 4, **d, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, **d, requires_grad=True)
    s_in = (torch.rand(2, 3, **d) + 0.5).requires_grad_()
    s_out = (torch.rand(2, 4, **d) + 0.5).requires_grad_()
    fn = lambda x, w, a, b: fused.ScaledConv.apply(x, w, a, b, geom, TorchLib)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, s_in, s_out))
    assert torch.autograd.gradgradcheck(fn, (x, w, s_in, s_out))


def test_reference_fused_and_unfused_evaluations_agree_and_match_finite_differences():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    f = setup_filter().double()
    for up, down in ((1, 1), (2, 1), (1, 2)):
        a = modulated_conv2d_reference(x, w, s, True, up, down, f, fused=True)
        b = modulated_conv2d_reference(x, w, s, True, up, down, f, fused=False)
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda x, w, s: modulated_conv2d_reference(x, w, s, True, 2, 1, f), (x, w, s))


def test_cuda_impl_and_bad_shapes_raise_clearly():
    x, w, s = torch.randn(2, 3, 4, 4), torch.randn(5, 3, 3, 3), torch.randn(2, 3)
    with pytest.raises(dispatch.KernelUnavailable, match="no impl='cuda'"):
        modulated_conv2d(x, w, s, impl="cuda")
    with pytest.raises(ValueError, match="do not fit together"):
        modulated_conv2d(x, w, s[:, :2])
    with pytest.raises(ValueError, match="not supported"):
        modulated_conv2d(x, w, s, up=2)


def test_stylegan2_layer_takes_the_triton_path_under_the_default_impl():
    from hifigan.nn.modconv import ModulatedConv2d
    torch.manual_seed(0)
    layer = ModulatedConv2d(6, 5, 3, w_dim=8, up=2, resample_filter=setup_filter())
    x, wlat = torch.randn(2, 6, 4, 4), torch.randn(2, 8, requires_grad=True)
    y_ref = layer(x, wlat)
    with dispatch.use_impl("triton"):
        y = layer(x, wlat)
        (g,) = torch.autograd.grad(y.square().sum(), wlat, create_graph=True)
        (h,) = torch.autograd.grad(g.square().sum(), layer.weight)
    (g_ref,) = torch.autograd.grad(y_ref.square().sum(), wlat, create_graph=True)
    (h_ref,) = torch.autograd.grad(g_ref.square().sum(), layer.weight)
    for a, b in ((y, y_ref), (g, g_ref), (h, h_ref)):
        assert _rel(a, b) < 1e-5
