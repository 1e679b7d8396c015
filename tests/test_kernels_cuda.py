"""The CUDA bias_act (kernels/bias_act/cuda): it compiles, and it computes what the reference does.

Without a GPU: every .cu file compiles with nvcc for sm_80 (C++17) and sm_90 (with the standard
and macros torch's extension builder passes), the binding compiles against torch's headers and
declares the launchers as bias_act.cu defines them, and the kernel loop bodies, built for the host
with g++ (-DHIFIGAN_BIAS_ACT_HOST_EMULATION), run through the shared autograd of fused.py on the
CPU: forward, backward and double backward against bias_act_reference for every activation,
dtype and layout, on the vector and the scalar path. The compilers all start at once in one
fixture, so their ~30 s of CPU time overlaps on a multi-core machine.
With a GPU, the same checks run on bias_act(..., impl="cuda") itself.

Comparisons are against the reference in fp32 on the same (rounded) inputs, because the kernels
compute in fp32 and round once. The one place where the two may rightly disagree is an output
within a rounding of the clamp (the kernel's mask reads the stored y, the reference the value
before clamping), so incoming gradients are zeroed there.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

from hifigan.kernels.bias_act import ACTIVATIONS, bias_act, bias_act_reference, cuda_impl, fused
from hifigan.kernels.dispatch import KernelUnavailable

ROOT = Path(__file__).resolve().parents[1]
CU_FILES = sorted((ROOT / "kernels").glob("**/cuda/*.cu"))
BIAS_ACT_CU = ROOT / "kernels" / "bias_act" / "cuda" / "bias_act.cu"
BINDING = ROOT / "kernels" / "bias_act" / "cuda" / "binding.cpp"
TORCH_NVCC_FLAGS = ["-std=c++20", "--expt-relaxed-constexpr", "-D__CUDA_NO_HALF_OPERATORS__",  # as load() adds
                    "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
                    "-D__CUDA_NO_HALF2_OPERATORS__", "-Xcompiler", "-fPIC"]
DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
ACTS = list(ACTIVATIONS)
LAYOUTS = ("nchw", "channels_last", "dim2", "last", "sliced")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cuda_home() -> str | None:
    from torch.utils.cpp_extension import CUDA_HOME
    home = CUDA_HOME or os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    return home if (Path(home) / "include" / "cuda_fp16.h").exists() else None


class Jobs:
    """Compiler runs started at once, awaited by name."""

    def __init__(self, out: Path):
        self.out, self.procs = out, {}

    def start(self, key, cmd):
        self.procs[key] = (cmd, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 text=True))

    def wait(self, key):
        if key not in self.procs:
            pytest.skip(f"{key}: the compiler it needs is not installed")
        cmd, p = self.procs[key]
        log, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{log[-4000:]}"


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda_build")
    j = Jobs(out)
    if shutil.which("nvcc"):
        for i, cu in enumerate(CU_FILES):
            j.start(("nvcc", cu, 80), ["nvcc", "-c", "-O3", "-std=c++17", "-arch=sm_80", str(cu),
                                       "-o", str(out / f"{i}_80.o")])
            j.start(("nvcc", cu, 90), ["nvcc", "-c", "-O3", "-arch=sm_90", *TORCH_NVCC_FLAGS, str(cu),
                                       "-o", str(out / f"{i}_90.o")])
    if shutil.which("g++"):
        from torch.utils.cpp_extension import include_paths
        inc = [f"-isystem{p}" for p in include_paths() + [sysconfig.get_paths()["include"]]]
        j.start("binding", ["g++", "-fsyntax-only", "-std=c++17", "-Wall", "-DTORCH_EXTENSION_NAME=hifigan_syntax",
                            *inc, str(BINDING)])
        if cuda_home():
            j.start("emulation", ["g++", "-x", "c++", "-std=c++17", "-O2", "-Wall", "-Wno-unknown-pragmas",
                                  "-shared", "-fPIC", "-include", "math.h", "-DHIFIGAN_BIAS_ACT_HOST_EMULATION",
                                  f"-I{cuda_home()}/include", str(BIAS_ACT_CU), "-o", str(out / "emulation.so")])
    yield j
    for _, p in j.procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


def test_every_cu_file_compiles_with_nvcc(jobs):
    if not shutil.which("nvcc"):
        pytest.skip("nvcc is not on PATH")
    assert CU_FILES, "no kernels/**/cuda/*.cu file found"
    for cu in CU_FILES:
        jobs.wait(("nvcc", cu, 80))
        jobs.wait(("nvcc", cu, 90))


def test_binding_compiles_against_torch_headers(jobs):
    jobs.wait("binding")


def c_signatures(path: Path) -> dict:
    """name -> (return type, parameter types) of each extern "C" hifigan_* function in a C++ file."""
    text = re.sub(r"\s+", " ", path.read_text())
    found = re.findall(r'extern "C" ([\w\s*]+?) ?(hifigan_\w+)\(([^)]*)\)', text)
    return {name: (ret.strip(), [re.sub(r" ?\w+$", "", p.strip()) for p in params.split(",")])
            for ret, name, params in found}


def test_binding_declarations_match_the_cu_definitions():
    """extern "C" names carry no types, so a mismatch would link and then corrupt every call."""
    declared, defined = c_signatures(BINDING), c_signatures(BIAS_ACT_CU)
    assert len(declared) == 3
    for name, sig in declared.items():
        assert defined.get(name) == sig, f"{name}: binding.cpp declares {sig}, bias_act.cu has {defined.get(name)}"


# -- the kernels run on the host (no GPU needed) ---------------------------------------------------

class Emulated:
    """A launcher module (fwd, bwd as in cuda_impl) over the host build of bias_act.cu; `threads`
    grid-stride lanes run one after another, `vec` allows the 16-byte vector path."""
    CTYPES = {"const void*": ctypes.c_void_p, "void*": ctypes.c_void_p, "int64_t": ctypes.c_int64,
              "int": ctypes.c_int, "float": ctypes.c_float}

    def __init__(self, path, vec=True, threads=37):
        self.lib, self.vec, self.threads = ctypes.CDLL(str(path)), int(vec), threads
        sigs = c_signatures(BIAS_ACT_CU)  # argtypes read from the source, so they cannot drift
        for name in ("hifigan_bias_act_fwd_host", "hifigan_bias_act_bwd_host"):
            getattr(self.lib, name).argtypes = [self.CTYPES[t] for t in sigs[name][1]]

    @staticmethod
    def _ptr(t):
        return None if t is None else t.data_ptr()

    def fwd(self, x, b, y, C, stride_c, spec):
        clamp = spec.clamp if spec.clamp is not None else 0.0
        rc = self.lib.hifigan_bias_act_fwd_host(x.data_ptr(), self._ptr(b), y.data_ptr(), x.numel(), C, stride_c,
                                                spec.code, spec.alpha, spec.gain, clamp, DTYPES[x.dtype],
                                                b is not None, spec.clamp is not None, self.vec, self.threads)
        assert rc == 0

    def bwd(self, g, x, b, y, out, C, stride_c, spec):
        clamp = spec.clamp if spec.clamp is not None else 0.0
        rc = self.lib.hifigan_bias_act_bwd_host(g.data_ptr(), self._ptr(x), self._ptr(b), self._ptr(y), out.data_ptr(),
                                                g.numel(), C, stride_c, spec.code, spec.alpha, spec.gain, clamp,
                                                DTYPES[g.dtype], spec.from_z, b is not None, spec.clamp is not None,
                                                self.vec, self.threads)
        assert rc == 0


@pytest.fixture(scope="module", params=["vector", "scalar"])
def emulated(request, jobs):
    jobs.wait("emulation")
    path = jobs.out / "emulation.so"
    return Emulated(path, vec=True, threads=37) if request.param == "vector" else Emulated(path, vec=False, threads=5)


def make_x(layout, dtype, device, seed):
    """x and the bias dim; odd sizes so that vectors straddle channels and leave tails."""
    g = torch.Generator().manual_seed(seed)
    shape, dim = {"nchw": ((2, 6, 5, 7), 1), "channels_last": ((2, 6, 5, 7), 1), "dim2": ((3, 4, 5, 6), 2),
                  "last": ((5, 4, 11), -1), "sliced": ((5, 5, 3, 3), 1)}[layout]
    x = torch.randn(shape, generator=g) * 1.5
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    x = x.to(device=device, dtype=dtype)
    if layout == "sliced":  # a view at a storage offset of 45 elements: not 16-byte aligned, the scalar path
        x = x[1:]
    b = (torch.randn(x.shape[dim], generator=g) * 0.5).to(device=device, dtype=dtype)
    return x.detach().requires_grad_(), b.requires_grad_(), dim


def tols(dtype):
    """(rtol, atol relative to the largest expected magnitude) for one rounding to dtype."""
    return {torch.float32: (1e-5, 1e-6), torch.float16: (2 ** -9, 2 ** -11), torch.bfloat16: (2 ** -6, 2 ** -8)}[dtype]


def assert_near(actual, expected, dtype, factor=1.0, atol=None):
    rtol, arel = tols(dtype)
    actual = torch.zeros_like(expected) if actual is None else actual.detach().float()
    expected = expected.detach().float()
    if atol is None:
        atol = factor * arel * max(expected.abs().max().item(), 1e-3)
    torch.testing.assert_close(actual, expected, rtol=factor * rtol, atol=atol)


def ambiguous(x32, b32, dim, act, clamp, dtype):
    """Outputs within two roundings of the clamp, where kernel and reference may pick different sides."""
    if clamp is None:
        return torch.zeros_like(x32, dtype=torch.bool)
    pre = bias_act_reference(x32.detach(), b32.detach(), dim, act)
    return ((pre.abs() - clamp).abs() <= 2 * torch.finfo(dtype).eps * clamp).to(x32.device)


def channel_sum(t, dim):
    return t.sum([d for d in range(t.ndim) if d != dim % t.ndim])


def check_first_order(op, device, dtype, act, clamp):
    for i, layout in enumerate(LAYOUTS):
        x, b, dim = make_x(layout, dtype, device, seed=i)
        x32, b32 = x.detach().float().requires_grad_(), b.detach().float().requires_grad_()
        y = op(x, b, dim, act, clamp)
        y32 = bias_act_reference(x32, b32, dim, act, clamp=clamp)
        assert y.dtype == dtype and y.shape == x.shape and y.stride() == x.stride(), layout
        assert_near(y, y32, dtype)
        g = torch.randn_like(y).masked_fill(ambiguous(x32, b32, dim, act, clamp, dtype), 0)
        dx, db = torch.autograd.grad(y, (x, b), g)
        dx32, db32 = torch.autograd.grad(y32, (x32, b32), g.float())
        assert_near(dx, dx32, dtype)
        assert_near(db, db32, dtype, atol=2 * tols(dtype)[0] * channel_sum(dx32.abs(), dim).max().item() + 1e-5)


def check_second_order(op, device, dtype, act, clamp):
    """d/d(x, b, w) of <v, dL/dx> for dL/dy = w: the R1 / path-length pattern."""
    for i, layout in enumerate(LAYOUTS):
        x, b, dim = make_x(layout, dtype, device, seed=10 + i)
        x32, b32 = x.detach().float().requires_grad_(), b.detach().float().requires_grad_()
        amb = ambiguous(x32, b32, dim, act, clamp, dtype)
        w = torch.randn_like(x).masked_fill(amb, 0).requires_grad_()
        v = torch.randn_like(x).masked_fill(amb, 0)
        w32 = w.detach().float().requires_grad_()
        grads = []
        for xx, bb, ww, fn in ((x, b, w, op), (x32, b32, w32, lambda *a: bias_act_reference(*a[:3], a[3], clamp=a[4]))):
            dx, = torch.autograd.grad(fn(xx, bb, dim, act, clamp), xx, ww, create_graph=True)
            grads.append(torch.autograd.grad((dx * v.to(dx.dtype)).sum(), (xx, bb, ww), allow_unused=True))
        (gx, gb, gw), (gx32, gb32, gw32) = grads
        gx32 = torch.zeros_like(x32) if gx32 is None else gx32
        gb32 = torch.zeros_like(b32) if gb32 is None else gb32
        assert_near(gw, gw32, dtype, factor=2)
        assert_near(gx, gx32, dtype, factor=8)  # fused.py forms act'' * dy * ddx in dtype: a few roundings
        assert_near(gb, gb32, dtype, atol=8 * tols(dtype)[0] * channel_sum(gx32.abs(), dim).max().item() + 1e-5)


def emulated_op(lib):
    return lambda x, b, dim, act, clamp: fused.bias_act(lib, x, b, dim, act, 0.2, ACTIVATIONS[act][1], clamp)


@pytest.mark.parametrize("dtype", list(DTYPES), ids=str)
@pytest.mark.parametrize("clamp", [None, 0.8])
@pytest.mark.parametrize("act", ACTS)
def test_host_emulation_matches_reference(emulated, act, clamp, dtype):
    check_first_order(emulated_op(emulated), "cpu", dtype, act, clamp)
    check_second_order(emulated_op(emulated), "cpu", dtype, act, clamp)


def poison_check(lib, device):
    """fwd and bwd write every element: outputs start as NaN, sizes around the vector width."""
    for dtype in DTYPES:
        for n in (1, 3, 7, 8, 9, 1000, 4099):
            base = torch.randn(n + 1, 3, device=device).to(dtype)
            for x in (base[:n], base[1:]):  # aligned, then at an offset of 3 elements
                b = torch.randn(3, device=device).to(dtype)
                spec = fused.Spec("tanh", 0.2, 1.0, 0.9, dim=1)
                y = torch.full_like(x, float("nan"))
                lib.fwd(x, b, y, 3, 1, spec)
                assert_near(y, bias_act_reference(x.float(), b.float(), 1, "tanh", clamp=0.9), dtype)
                out = torch.full_like(x, float("nan"))
                lib.bwd(torch.ones_like(x), x, b, y, out, 3, 1, spec)
                assert torch.isfinite(out).all() and torch.isfinite(y).all(), (dtype, n)


def test_host_emulation_writes_every_element(emulated):
    poison_check(emulated, "cpu")


def test_host_emulation_rejects_bad_arguments(jobs):
    jobs.wait("emulation")
    lib = Emulated(jobs.out / "emulation.so").lib
    x = torch.randn(8)
    y = torch.empty_like(x)
    fwd = lib.hifigan_bias_act_fwd_host
    assert fwd(x.data_ptr(), None, y.data_ptr(), 8, 1, 1, 6, 0.2, 1.0, 0.0, 0, 0, 0, 1, 1) != 0  # act code
    assert fwd(x.data_ptr(), None, y.data_ptr(), 8, 1, 1, 0, 0.2, 1.0, 0.0, 3, 0, 0, 1, 1) != 0  # dtype code
    assert fwd(x.data_ptr(), x.data_ptr(), y.data_ptr(), 8, 0, 1, 0, 0.2, 1.0, 0.0, 0, 1, 0, 1, 1) != 0  # C = 0
    bwd = lib.hifigan_bias_act_bwd_host  # tanh's slope cannot come from y
    assert bwd(x.data_ptr(), None, None, y.data_ptr(), y.data_ptr(), 8, 1, 1, 3, 0.2, 1.0, 0.0, 0, 0, 0, 0, 1, 1) != 0


# -- no CUDA: the failure is clear, one line, and remembered ----------------------------------------

def test_cuda_impl_on_cpu_tensors_raises():
    x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
    with pytest.raises(KernelUnavailable, match="CUDA tensors"):
        bias_act(x, b, act="lrelu", impl="cuda")
    torch.testing.assert_close(bias_act(x, b, act="lrelu", impl="auto"), bias_act_reference(x, b, act="lrelu"))


def test_failed_build_is_reported_once_and_remembered(monkeypatch):
    from torch.utils import cpp_extension
    calls = []

    def broken_load(**kw):
        calls.append(kw["name"])
        raise RuntimeError("Error building extension 'x':\n[1/3] nvcc ...\nbias_act.cu(3): error: something\nninja: stopped")

    monkeypatch.setattr(cuda_impl, "_lib", None)
    monkeypatch.setattr(cuda_impl, "_failure", None)
    monkeypatch.setattr(cuda_impl, "_missing", lambda: None)
    monkeypatch.setattr(cpp_extension, "load", broken_load)
    with pytest.raises(KernelUnavailable, match=r"bias_act\.cu\(3\): error: something$"):
        cuda_impl.load_extension()
    with pytest.raises(KernelUnavailable, match="earlier"):
        cuda_impl.load_extension()
    assert calls == [cuda_impl.NAME]


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch has CUDA")
def test_cpu_only_torch_reports_why(monkeypatch):
    monkeypatch.setattr(cuda_impl, "_lib", None)
    monkeypatch.setattr(cuda_impl, "_failure", None)
    with pytest.raises(KernelUnavailable, match="without CUDA"):
        cuda_impl.load_extension()


# -- on a GPU: the real kernels through the public op ------------------------------------------------

def cuda_op(x, b, dim, act, clamp):
    return bias_act(x, b, dim=dim, act=act, clamp=clamp, impl="cuda")


@gpu
@pytest.mark.parametrize("dtype", list(DTYPES), ids=str)
@pytest.mark.parametrize("clamp", [None, 0.8])
@pytest.mark.parametrize("act", ACTS)
def test_cuda_matches_reference(act, clamp, dtype):
    check_first_order(cuda_op, "cuda", dtype, act, clamp)
    check_second_order(cuda_op, "cuda", dtype, act, clamp)


@gpu
def test_cuda_writes_every_element():
    poison_check(cuda_impl, "cuda")


@gpu
def test_cuda_large_tensor_without_bias():
    x = torch.randn(3, 512, 67, 67, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
    y = bias_act(x, None, act="silu", impl="cuda")
    assert_near(y, bias_act_reference(x.float(), None, act="silu"), torch.bfloat16)
