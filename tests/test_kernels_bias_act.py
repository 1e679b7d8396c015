"""bias_act: the Triton kernels against the reference (forward, backward, double backward), the
reference against finite differences, and the impl dispatch rules. On a machine without CUDA the
Triton kernels run in the CPU interpreter (conftest sets TRITON_INTERPRET=1 before they load)."""
from __future__ import annotations

import types
import warnings

import pytest
import torch

from hifigan.kernels import dispatch
from hifigan.kernels.bias_act import ACTIVATIONS, bias_act, bias_act_reference

pytest.importorskip("triton")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# |fast - reference| <= atol + rtol * |reference|, the reference evaluated in fp32 from the same inputs
TOL = {torch.float32: (2e-6, 2e-6), torch.bfloat16: (1e-2, 1.6e-2), torch.float16: (1e-3, 2e-3)}
DTYPES = list(TOL)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def _close(fast, ref, dtype, what):
    atol, rtol = TOL[dtype]
    err = (fast.float() - ref.float()).abs()
    bound = atol + rtol * ref.float().abs()
    assert fast.dtype == dtype and torch.isfinite(fast).all(), what
    assert (err <= bound).all(), f"{what}: max error {err.max().item():.3g} (bound {bound.max().item():.3g})"


def _grads(fn, x, b, dy):
    """y, (dx, db) and the gradient of ||dx||^2 + ||db||^2 with respect to (x, b): double backward."""
    y = fn(x, b)
    dx, db = torch.autograd.grad(y, [x, b], dy, create_graph=True)
    pen = dx.float().square().sum() + db.float().square().sum()
    if not pen.requires_grad:  # piecewise-linear: the penalty does not depend on x or b
        return y, (dx, db), (torch.zeros_like(x), torch.zeros_like(b))
    hx, hb = torch.autograd.grad(pen, [x, b], allow_unused=True)
    return y, (dx, db), tuple(torch.zeros_like(t) if h is None else h for t, h in ((x, hx), (b, hb)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_triton_matches_reference_to_second_order(device, dtype, act):
    gen = torch.Generator().manual_seed(list(ACTIVATIONS).index(act))
    cases = [((3, 5, 7, 9), 1, False, None), ((2, 6, 5, 3), 1, True, 0.7), ((7, 33), 1, False, 0.5),
             ((4, 3, 11), -1, False, None)]
    for shape, dim, channels_last, clamp in cases:
        x0 = torch.randn(shape, generator=gen) * 2
        b0 = torch.randn(shape[dim], generator=gen)
        dy0 = torch.randn(shape, generator=gen)
        if clamp is not None:  # keep act(z) * gain away from the clamp by more than the storage ulp, where
            z = x0 + b0.reshape([-1 if d == dim % len(shape) else 1 for d in range(len(shape))])  # rounding decides
            y0 = bias_act_reference(z, act=act)
            x0 = torch.where(((y0.abs() - clamp).abs() < 0.03), x0 + 0.2, x0)
        x = x0.to(device, dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        b = b0.to(device, dtype).requires_grad_()
        x.requires_grad_()
        fast = _grads(lambda x, b: bias_act(x, b, dim=dim, act=act, clamp=clamp, impl="triton"), x, b, dy0.to(device, dtype))
        xr, br = x.detach().float().requires_grad_(), b.detach().float().requires_grad_()
        ref = _grads(lambda x, b: bias_act_reference(x, b, dim=dim, act=act, clamp=clamp), xr, br,
                     dy0.to(device, dtype).float())
        what = f"{act} {dtype} {shape} dim={dim} clamp={clamp}"
        _close(fast[0], ref[0], dtype, what + " forward")
        if channels_last:
            assert fast[0].is_contiguous(memory_format=torch.channels_last), "output keeps the memory format"
        for f, r, name in zip(fast[1] + fast[2], ref[1] + ref[2], ("dx", "db", "d2x", "d2b")):
            scale = r.float().abs().max().clamp(min=1)  # sums over many elements: compare relative to the largest
            _close(f / scale, r / scale, dtype, f"{what} {name}")


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_every_output_element_is_written(act):
    from hifigan.kernels.bias_act import fused, triton_impl
    x = torch.randn(2, 3, 5, 7).contiguous(memory_format=torch.channels_last)
    b = torch.randn(3)
    spec = fused.Spec(act, 0.2, 1.3, None, 1)
    y = torch.full_like(x, float("nan"))
    triton_impl.fwd(x, b, y, 3, x.stride(1), spec)
    assert torch.isfinite(y).all()
    dx = torch.full_like(x, float("nan"))
    triton_impl.bwd(torch.randn_like(x), x, b, y, dx, 3, x.stride(1), fused.Spec(act, 0.2, 1.3, 0.9, 1))
    assert torch.isfinite(dx).all()


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_reference_gradients_match_finite_differences(act):
    torch.manual_seed(0)
    x = (torch.randn(2, 3, 4, dtype=torch.float64) + 0.05).requires_grad_()  # kinks at 0 have measure zero
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act_reference(x, b, act=act, gain=1.7, clamp=1.5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_default_gains_keep_unit_variance_for_relu_family():
    assert ACTIVATIONS["relu"][1] == ACTIVATIONS["lrelu"][1] == pytest.approx(2 ** 0.5)
    x = torch.randn(200000)
    assert bias_act(x, act="relu").square().mean().item() == pytest.approx(1.0, rel=0.02)


def test_auto_runs_the_reference_on_cpu_and_rejects_unknown_impls():
    x = torch.randn(4, 3)
    assert dispatch.resolve("bias_act", "auto", [x]) == "reference"
    with pytest.raises(ValueError, match="choose from"):
        bias_act(x, impl="fast")
    with pytest.raises(dispatch.KernelUnavailable, match="needs CUDA tensors"):
        bias_act(x, impl="cuda")
    with pytest.raises(dispatch.KernelUnavailable, match="float64"):
        bias_act(x.double(), impl="triton")


def test_failed_fast_path_warns_once_then_falls_back_for_good(monkeypatch):
    monkeypatch.setattr(dispatch, "_broken", {})
    calls = []

    def broken(name):
        def fn(*args):
            calls.append(name)
            raise dispatch.KernelUnavailable(f"{name} build failed")
        return fn
    fake_cuda_tensor = types.SimpleNamespace(is_cuda=True, dtype=torch.float16, is_floating_point=lambda: True)
    fast = {"triton": broken("triton"), "cuda": broken("cuda")}
    with pytest.warns(RuntimeWarning) as record:
        out = dispatch.run("fake_op", "auto", [fake_cuda_tensor], fast, lambda v: v + 1, 41)
    assert out == 42 and calls == ["triton", "cuda"] and len(record) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.run("fake_op", "auto", [fake_cuda_tensor], fast, lambda v: v + 1, 1) == 2
    assert calls == ["triton", "cuda"], "a failed build is never retried"
    with pytest.raises(dispatch.KernelUnavailable, match="failed earlier"):
        dispatch.run("fake_op", "cuda", [fake_cuda_tensor], fast, lambda v: v, 0)


def test_use_impl_sets_the_process_default_temporarily():
    x = torch.randn(3, 4)
    with dispatch.use_impl("cuda"):
        with pytest.raises(dispatch.KernelUnavailable):
            bias_act(x)
    assert dispatch.default_impl() == "auto"
    torch.testing.assert_close(bias_act(x, act="lrelu"), bias_act_reference(x, act="lrelu"))
