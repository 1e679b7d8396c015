"""upfirdn2d: the Triton kernel against the PyTorch reference (forward, backward, double backward),
per storage dtype and memory layout, plus the reference's own gradchecks and the adjoint pads.

Without CUDA the kernel runs under the Triton interpreter, which is chosen when a kernel is
defined, so TRITON_INTERPRET is set before anything imports the kernel module. The interpreter
is slow: shapes stay tiny (N*C <= 6, H, W <= 11).
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

pytest.importorskip("triton")

from hifigan.kernels import dispatch  # noqa: E402
from hifigan.kernels.upfirdn2d import triton_impl, upfirdn2d, upfirdn2d_reference  # noqa: E402
from hifigan.nn.fir import conv2d_resample, downsample2d, setup_filter, upsample2d  # noqa: E402

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
needs_triton = pytest.mark.skipif(not CUDA and not dispatch.interpreting(),
                                  reason="no CUDA and TRITON_INTERPRET=0: the Triton kernel cannot run here")

# (id, filter shape, up, down, pad (left, right, top, bottom), gain): the calls StyleGAN2 makes
# (4-tap filter) and the corners of the general op.
CASES = [
    ("upsample2d", (4, 4), 2, 1, (2, 1, 2, 1), 4.0),
    ("downsample2d", (4, 4), 1, 2, (1, 1, 1, 1), 1.0),
    ("after-tconv-k3", (4, 4), 1, 1, (1, 1, 1, 1), 4.0),  # p = fw - k + 1 = 2 -> ((p+1)//2, p//2)
    ("before-strided-k3", (4, 4), 1, 1, (2, 2, 2, 2), 1.0),  # p = (fw - 2) + (k - 1) = 4
    ("blur-pad1", (3, 3), 1, 1, (1, 1, 1, 1), 1.0),
    ("blur-pad2", (5, 5), 1, 1, (2, 2, 2, 2), 1.0),
    ("up-crop", (4, 4), 2, 1, (-1, -2, 0, -3), 4.0),
    ("down-crop", (4, 4), 1, 2, (-1, 0, -2, 1), 1.0),
    ("nonsquare", (3, 5), 2, 1, (2, 1, 0, 3), 2.0),
    ("up3-down2", (4, 3), 3, 2, (1, 0, 2, 2), 1.5),
]
SHAPES = [(1, 3, 5, 7), (2, 3, 11, 6), (2, 1, 4, 4), (3, 2, 7, 9)]
TOL = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}  # relative to max |reference|


def _inputs(i, fshape, dtype=torch.float32, device=DEV, channels_last=False):
    g = torch.Generator().manual_seed(1234 + i)
    x = torch.randn(SHAPES[i % len(SHAPES)], generator=g).to(device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    f = torch.rand(fshape, generator=g).to(device)  # asymmetric, so a missing flip shows
    return x.requires_grad_(), f


def _close(a, b, tol):
    scale = max(b.detach().abs().max().item(), 1.0)
    err = (a.detach().float() - b.detach().float()).abs().max().item()
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def _three_ways(x, f, up, down, pad, gain, impl, g_dtype=None):
    """Forward, x-gradient for a random upstream gradient g, and a double backward:
    d/dx of |d/dx sum(g * y^2)|^2, which goes through the op, its adjoint and the adjoint's adjoint.
    g is rounded to g_dtype first (default y's), so that an fp32 oracle sees the same g."""
    y = upfirdn2d(x, f, up, down, pad, gain, impl=impl)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(7)).to(g_dtype or y.dtype).to(y)
    (dx,) = torch.autograd.grad(y, x, g, retain_graph=True)
    (dx2,) = torch.autograd.grad((g * y.square()).sum(), x, create_graph=True)
    (ddx,) = torch.autograd.grad(dx2.square().sum(), x)
    return y, dx, ddx


@needs_triton
@pytest.mark.parametrize("i,case", list(enumerate(CASES)), ids=[c[0] for c in CASES])
def test_triton_matches_reference_fp32(i, case):
    _, fshape, up, down, pad, gain = case
    x, f = _inputs(i, fshape)
    got = _three_ways(x, f, up, down, pad, gain, "triton")
    want = _three_ways(x, f, up, down, pad, gain, "reference")
    assert got[0].shape == want[0].shape and got[0].dtype == x.dtype
    for a, b in zip(got, want):
        _close(a, b, 1e-5)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("i", [0, 1, 6], ids=[CASES[i][0] for i in (0, 1, 6)])
def test_triton_dtypes_against_fp32_reference(i, dtype):
    """Storage in bf16 / fp16, fp32 inside: compare with the fp32 reference on the same rounded inputs."""
    _, fshape, up, down, pad, gain = CASES[i]
    x, f = _inputs(i, fshape, dtype=dtype)
    y = upfirdn2d(x, f, up, down, pad, gain, impl="triton")
    assert y.dtype == dtype
    x32 = x.detach().float().requires_grad_()
    y32 = upfirdn2d_reference(x32, f, up, down, pad, gain)
    _close(y, y32, TOL[dtype])
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(3)).to(y)
    (dx,) = torch.autograd.grad(y, x, g)
    (dx32,) = torch.autograd.grad(y32, x32, g.float())
    assert dx.dtype == dtype
    _close(dx, dx32, TOL[dtype])


@needs_triton
@pytest.mark.parametrize("i", [0, 1, 8], ids=[CASES[i][0] for i in (0, 1, 8)])
def test_triton_channels_last(i):
    _, fshape, up, down, pad, gain = CASES[i]
    x, f = _inputs(i, fshape, channels_last=True)
    got = _three_ways(x, f, up, down, pad, gain, "triton")
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(got, _three_ways(x, f, up, down, pad, gain, "reference")):
        _close(a, b, 1e-5)


@needs_triton
def test_triton_any_strides():
    base = torch.randn(2, 3, 9, 12, device=DEV)
    f = torch.rand(4, 4, device=DEV)
    for x in (base[:, :, 1::2, ::3], base.transpose(2, 3), base.expand(2, 3, 9, 12)[:, :1].expand(2, 3, 9, 12)):
        _close(upfirdn2d(x, f, 2, 1, (2, 1, 2, 1), 4.0, impl="triton"),
               upfirdn2d_reference(x, f, 2, 1, (2, 1, 2, 1), 4.0), 1e-5)


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_triton_writes_every_output(monkeypatch, channels_last):
    """A NaN-filled output buffer, tiles shrunk so the grid has several programs on every axis
    (and the sample axis split into launches): every element must be written, and right."""
    monkeypatch.setattr(triton_impl, "TILE", 8)
    monkeypatch.setattr(triton_impl, "MAX_GRID_Z", 1)
    f = torch.rand(4, 4, device=DEV)
    x = torch.randn(2, 3, 3, 5, device=DEV)  # tiles [1 x 8] (nchw: ragged pixel axis), [4 x 2] (nhwc: ragged channels)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for up, down, pad in ((2, 1, (2, 1, -1, 1)), (1, 2, (1, 1, 1, 1))):
        y = torch.full(triton_impl.out_shape(x, f, up, down, pad), float("nan"), device=DEV)
        if channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        triton_impl.fwd(x, f, y, up, down, pad, 2.0)
        assert not y.isnan().any()
        _close(y, upfirdn2d_reference(x, f, up, down, pad, 2.0), 1e-5)


@needs_triton
def test_fir_helpers_pass_impl_through():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 5, generator=g).to(DEV)
    w = torch.randn(2, 4, 3, 3, generator=g).to(DEV)
    f = setup_filter().to(DEV)
    for fn in (lambda impl: upsample2d(x, f, impl=impl), lambda impl: downsample2d(x, f, impl=impl),
               lambda impl: conv2d_resample(x, w, f, up=2, impl=impl),
               lambda impl: conv2d_resample(x, w, f, down=2, impl=impl)):
        _close(fn("triton"), fn("reference"), 1e-5)


@pytest.mark.parametrize("i,case", list(enumerate(CASES)), ids=[c[0] for c in CASES])
def test_reference_gradcheck(i, case):
    _, fshape, up, down, pad, gain = case
    g = torch.Generator().manual_seed(i)
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    f = torch.rand(fshape, generator=g, dtype=torch.float64)
    fn = lambda t: upfirdn2d_reference(t, f, up, down, pad, gain)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)  # fast: random projections of the Jacobian
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_adjoint_pads_give_the_transpose():
    """<A x, y> = <x, A^T y> with A^T = upfirdn2d(., flip(f), down, up, adjoint_pad(..)), over random
    arguments (reference only, float64), including pads that crop and outputs the floor shortened."""
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        up, down = (int(v) for v in torch.randint(1, 4, (2,), generator=g))
        fh, fw = (int(v) for v in torch.randint(1, 6, (2,), generator=g))
        H, W = (int(v) for v in torch.randint(1, 8, (2,), generator=g))
        pad = tuple(int(v) for v in torch.randint(-2, 5, (4,), generator=g))
        if (H * up + pad[2] + pad[3] - fh) < 0 or (W * up + pad[0] + pad[1] - fw) < 0:
            continue
        x = torch.randn(1, 1, H, W, generator=g, dtype=torch.float64)
        f = torch.randn(fh, fw, generator=g, dtype=torch.float64)
        y = upfirdn2d_reference(x, f, up, down, pad, 1.5)
        dy = torch.randn(y.shape, generator=g, dtype=torch.float64)
        q = triton_impl.adjoint_pad((H, W), tuple(y.shape[2:]), (fh, fw), up, down, pad)
        xt = upfirdn2d_reference(dy, f.flip([0, 1]), down, up, q, 1.5)
        assert xt.shape == x.shape
        assert torch.allclose((y * dy).sum(), (x * xt).sum(), atol=1e-10)


def test_argument_errors():
    x, f = torch.randn(1, 1, 4, 4), torch.ones(2, 2)
    for kw, msg in ((dict(x=torch.randn(4, 4)), "4-D"), (dict(f=torch.ones(4)), "2-D"), (dict(up=0), ">= 1"),
                    (dict(down=1.5), "integer"), (dict(pad=(1, 2)), "pad"), (dict(pad=(-4, 0, 0, 0)), "output")):
        args = dict(x=x, f=f) | kw
        with pytest.raises(ValueError, match=msg):
            upfirdn2d(args.pop("x"), args.pop("f"), **args)


def test_auto_on_cpu_is_the_reference_and_triton_refuses_float64():
    x, f = torch.randn(1, 2, 5, 5, dtype=torch.float64), torch.rand(3, 3, dtype=torch.float64)
    assert torch.equal(upfirdn2d(x, f, pad=1, impl="auto"), upfirdn2d_reference(x, f, pad=(1, 1, 1, 1)))
    with pytest.raises(dispatch.KernelUnavailable, match="float32"):
        upfirdn2d(x, f, impl="triton")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_cuda_parity_stylegan2_shapes(dtype, channels_last):
    """On the GPU at StyleGAN2-like sizes: the compiled kernel (not the interpreter) against the
    fp32 reference, forward, backward and double backward."""
    f = setup_filter().cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    for shape in ((4, 64, 4, 4), (2, 32, 33, 17), (2, 8, 128, 128)):
        for _, fshape, up, down, pad, gain in CASES:
            ff = f if fshape == (4, 4) else torch.rand(fshape, device="cuda", generator=g)
            x = torch.randn(shape, device="cuda", generator=g).to(dtype)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            x32 = x.detach().float().requires_grad_()
            got = _three_ways(x, ff, up, down, pad, gain, "triton")
            want = _three_ways(x32, ff, up, down, pad, gain, "reference", g_dtype=dtype)
            tol = TOL[dtype] * (1 if dtype == torch.float32 else 4)  # double backward rounds 3 times
            for a, b in zip(got, want):
                assert a.dtype == dtype
                _close(a, b, tol)
