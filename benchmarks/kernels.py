#!/usr/bin/env python
"""Fused-kernel benchmark: bias_act, modulated convolution and upfirdn2d against their PyTorch references.

    python benchmarks/kernels.py [--quick]             # --quick: a smoke run; without CUDA: references only
    python benchmarks/kernels.py --ops modconv --dtypes bf16,fp16 --out docs/kernels.md

One markdown table per op: shape, dtype, impl, time (median of --reps CUDA-event timings after --warmup
calls; perf_counter on a CPU), GB/s or TFLOP/s, percent of the ceilings measured in the same run (a
device-to-device copy, read + write counted; an 8192^3 bf16 matmul) and speed-up over the reference.
StyleGAN2 config F shapes (channels min(32768 // res, 512)) at --batch 32, --resolution 1024:
- bias_act, lrelu + bias: 64M elements ([batch, 128, 128, 128]) and the three largest G activations,
  contiguous and channels-last; fwd, bwd (autograd.grad of y for x with a fixed dy, the bias constant)
  and fwd+bwd. GB/s counts a fused kernel's traffic: fwd x + b + y, bwd dy + y + dx. Baseline
  "unfused" = bias_act_reference (add, lrelu, gain as separate ops); "reference" = the lean impl.
- modconv: per resolution 8..1024 the up=2 3x3, the 3x3 and the 1x1 toRGB (no demodulation) G layer;
  fwd and fwd+bwd (grads of x, weight, styles; weight and styles fp32 as in the model). FLOPs
  2*N*O*I*k*k*P, P = output pixels (input pixels for the up=2 transposed conv), x3 for fwd+bwd.
  Baseline "grouped" = impl="reference", fused=True; "unfused" = fused=False. err = max |a - a32| /
  max |a32| against the fp32 reference with TF32 off: y on fwd rows, the worst of the grads on fwd+bwd.
- upfirdn2d: the 4x4 [1, 3, 3, 1] filter after the up=2 transposed conv (up_pads(4, 3), gain 4) and
  before the down=2 strided conv (down_pads(4, 3)) on the G activations; fwd and fwd+bwd; x + y bytes.
Then PASS / FAIL per target of the issue. Without CUDA: batch 2, resolution 32, Triton rows "needs a GPU".
Run by hand only (no test imports it).
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import math
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hifigan.io import atomic_write  # noqa: E402
from hifigan.kernels.bias_act import bias_act, bias_act_reference  # noqa: E402
from hifigan.kernels.dispatch import KernelUnavailable  # noqa: E402
from hifigan.kernels.modconv import modulated_conv2d  # noqa: E402
from hifigan.kernels.modconv.reference import down_pads, up_pads  # noqa: E402
from hifigan.kernels.upfirdn2d import upfirdn2d  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEFAULT_DTYPES = {"bias_act": "bf16,fp16,fp32", "modconv": "bf16", "upfirdn2d": "bf16,fp16,fp32"}
TOL = {"bf16": 2e-2, "fp16": 4e-3, "fp32": 5e-3}  # err relative to max |fp32 reference|; fp32 may run in TF32
FAST = ("triton", "cuda")


def channels(res: int) -> int:
    return min(32768 // res, 512)


class Bench:
    """Device, timing settings, the measured ceilings and every row recorded so far."""

    def __init__(self, args):
        self.cuda = torch.cuda.is_available()
        self.dev = torch.device("cuda" if self.cuda else "cpu")
        self.reps, self.warmup = args.reps, args.warmup
        torch.backends.cudnn.benchmark = True  # cuDNN autotuning, as the trainer runs when not deterministic
        self.copy_gbs = self.mm_tflops = float("nan")
        self.rows: dict[str, list[dict]] = {}

    def time_ms(self, fn) -> float:
        """Median milliseconds per call of fn after the warmup calls."""
        for _ in range(self.warmup):
            fn()
        if not self.cuda:
            times = []
            for _ in range(self.reps):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1e3)
            return statistics.median(times)
        torch.cuda.synchronize()
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(self.reps)]
        for start, end in ev:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) for s, e in ev)

    def attempt(self, impl: str, fn):
        """(fn(), None), or (None, why) when the impl cannot run here, memory runs out or a fast path fails."""
        if not self.cuda and impl in FAST:
            return None, f"{impl}: needs a GPU"
        oom = False
        try:
            return fn(), None
        except (KernelUnavailable, ImportError) as err:
            return None, f"unavailable: {str(err).splitlines()[0][:90]}"
        except torch.cuda.OutOfMemoryError:
            oom = True
        except Exception as err:  # a fast path that breaks some other way: a row saying so, not a lost run
            if impl not in FAST:
                raise
            return None, f"error: {type(err).__name__}: {(str(err).strip().splitlines() or [''])[-1][:90]}"
        if oom:  # outside the except block, so the traceback's tensors are gone before emptying the cache
            gc.collect()
            torch.cuda.empty_cache()
        return None, "OOM"

    def impl_rows(self, op: str, info: dict, cases, amount: float, scale: float, extra=None):
        """Time each (name, impl, make) case, make() giving the callable to time; the first case is the
        baseline of the speed-up. rate = amount / ms / scale; extra(name, impl) adds columns."""
        base = None
        for i, (name, impl, make) in enumerate(cases):
            ms, why = self.attempt(impl, lambda: self.time_ms(make()))
            base = ms if i == 0 else base
            row = dict(info, impl=name, ms=ms, note=why, base=base, rate=amount / ms / scale if ms else None)
            if extra is not None and ms:
                row.update(extra(name, impl))
            self.rows.setdefault(op, []).append(row)

    def free(self):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


def environment(bn: Bench) -> list[str]:
    try:
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = "not installed"
    name = torch.cuda.get_device_name() if bn.cuda else \
        f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
    return [f"device: {name}", f"torch {torch.__version__}, triton {triton}, CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version() if bn.cuda else None}",
            f"timing: median of {bn.reps} {'CUDA-event' if bn.cuda else 'perf_counter'} timings after "
            f"{bn.warmup} warmup calls; cudnn.benchmark on"]


def measure_ceilings(bn: Bench) -> list[str]:
    n, m = ((1 << 28), 8192) if bn.cuda else ((1 << 24), 1024)  # n fp32 elements: 1 GiB on a GPU
    src = torch.randn(n, device=bn.dev)
    dst = torch.empty_like(src)
    bn.copy_gbs = 2 * src.nbytes / bn.time_ms(lambda: dst.copy_(src)) / 1e6
    src = dst = None
    a = torch.randn(m, m, device=bn.dev, dtype=torch.bfloat16)
    bn.mm_tflops = 2 * m ** 3 / bn.time_ms(lambda: a @ a) / 1e9
    return [f"ceilings: device-to-device copy {num(bn.copy_gbs)} GB/s (read + write, {n * 4 >> 20} MiB tensor); "
            f"bf16 matmul {num(bn.mm_tflops)} TFLOP/s ({m}^3)"]


def act_shapes(args) -> list[tuple[int, ...]]:
    """The three largest G activations [batch, C(res), res, res] (the largest only with --quick)."""
    top = args.resolution
    shapes = [(args.batch, channels(r), r, r) for r in (top // 4, top // 2, top) if r >= 4]
    return shapes[-1:] if args.quick else shapes


# -- bias_act -------------------------------------------------------------------------------------

BIAS_ACT_IMPLS = {
    "unfused": ("reference", lambda x, b: bias_act_reference(x, b, act="lrelu")),
    "reference": ("reference", lambda x, b: bias_act(x, b, act="lrelu", impl="reference")),
    "triton": ("triton", lambda x, b: bias_act(x, b, act="lrelu", impl="triton")),
    "cuda": ("cuda", lambda x, b: bias_act(x, b, act="lrelu", impl="cuda")),
}


def maker(mode: str, call, inputs, dy):
    """The maker of the callable to time for call() -> y: y alone ("fwd"), or y and its gradients
    for inputs given dy ("fwd+bwd")."""
    if mode == "fwd":
        return lambda: call
    return lambda: (lambda: torch.autograd.grad(call(), inputs, dy))


def bias_act_make(f, x, b, dy, mode: str):
    """As maker; "bwd" runs the forward once, untimed, and times the backward through its kept graph."""
    if mode != "bwd":
        return maker(mode, partial(f, x, b), x, dy)

    def make():
        y = f(x, b)
        return lambda: torch.autograd.grad(y, x, dy, retain_graph=True)
    return make


def bench_bias_act_case(bn: Bench, shape, layout: str, dname: str):
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, device=bn.dev, dtype=DTYPES[dname]).to(memory_format=fmt).requires_grad_()
    bias, dy = torch.randn(shape[1], device=bn.dev), torch.randn_like(x)
    nx = x.numel() * x.element_size()
    traffic = {"fwd": 2 * nx + bias.nbytes, "bwd": 3 * nx, "fwd+bwd": 5 * nx + bias.nbytes}
    for mode, nbytes in traffic.items():
        cases = [(name, impl, bias_act_make(f, x, bias, dy, mode)) for name, (impl, f) in BIAS_ACT_IMPLS.items()]
        bn.impl_rows("bias_act", dict(shape=shape, layout=layout, dtype=dname, mode=mode), cases, nbytes, 1e6)


def bench_bias_act(bn: Bench, args, dtypes):
    for shape in [(args.batch, 128, 128, 128)] + act_shapes(args):
        for layout in ("contiguous", "channels_last"):
            for dname in dtypes:
                bench_bias_act_case(bn, shape, layout, dname)
                bn.free()


# -- modulated convolution ------------------------------------------------------------------------

MODCONV_IMPLS = {"grouped": ("reference", True), "unfused": ("reference", False), "triton": ("triton", True)}


def modconv_layers(top: int, quick: bool):
    """(label, in, out, k, input size, up, demodulate) of the G layers at each resolution."""
    res = [2 ** i for i in range(3, int(math.log2(top)) + 1)]
    if quick:
        res = sorted({8, max(top // 4, 8), top})
    for r in res:
        yield f"{r} up", channels(r // 2), channels(r), 3, r // 2, 2, True
        yield f"{r} conv", channels(r), channels(r), 3, r, 1, True
        yield f"{r} toRGB", channels(r), 3, 1, r, 1, False


def relerr(a, ref) -> float:
    return ((a.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def fp32_oracle(run, x, w, s, dy):
    """run(x, w, s, impl, fused) in fp32 through the unfused reference with TF32 off: (y, (dx, dw, ds))."""
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        args = [t.detach().float().requires_grad_() for t in (x, w, s)]
        y = run(*args, "reference", False)
        return y.detach(), torch.autograd.grad(y, args, dy.float())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def bench_modconv_layer(bn: Bench, layer, dname: str, batch: int, f):
    label, I, O, k, size, up, demod = layer
    x = torch.randn(batch, I, size, size, device=bn.dev, dtype=DTYPES[dname]).requires_grad_()
    w = torch.randn(O, I, k, k, device=bn.dev).requires_grad_()  # weight and styles fp32, as in the model
    s = ((torch.randn(batch, I, device=bn.dev) * 0.2 + 1) / math.sqrt(I * k * k)).requires_grad_()
    dy = torch.randn(batch, O, size * up, size * up, device=bn.dev, dtype=x.dtype)
    flops = 2 * batch * O * I * k * k * size * size * (1 if up == 2 else up * up)  # up=2: a transposed conv

    def run(x, w, s, impl, fused):
        return modulated_conv2d(x, w, s, demod, up, 1, f if up == 2 else None, fused=fused, impl=impl)
    oracle = bn.attempt("reference", lambda: fp32_oracle(run, x, w, s, dy))[0]
    info = dict(layer=label, x=tuple(x.shape), y=tuple(dy.shape), dtype=dname)
    for mode, n in (("fwd", flops), ("fwd+bwd", 3 * flops)):
        def extra(name, impl, mode=mode):
            def errors():
                y = run(x, w, s, impl, MODCONV_IMPLS[name][1])
                if mode == "fwd":
                    return relerr(y.detach(), oracle[0])
                return max(relerr(g, o) for g, o in zip(torch.autograd.grad(y, (x, w, s), dy), oracle[1]))
            return {"err": bn.attempt(impl, errors)[0] if oracle else None}
        cases = [(name, impl, maker(mode, partial(run, x, w, s, impl, fused), (x, w, s), dy))
                 for name, (impl, fused) in MODCONV_IMPLS.items()]
        bn.impl_rows("modconv", dict(info, mode=mode), cases, n, 1e9, extra)


def bench_modconv(bn: Bench, args, dtypes):
    f = fir_filter(bn.dev)
    for layer in modconv_layers(args.resolution, args.quick):
        for dname in dtypes:
            bench_modconv_layer(bn, layer, dname, args.batch, f)
            bn.free()


# -- upfirdn2d ------------------------------------------------------------------------------------

def fir_filter(dev) -> torch.Tensor:
    t = torch.tensor([1.0, 3.0, 3.0, 1.0], device=dev)
    return torch.outer(t, t) / 64


def bench_upfirdn2d_case(bn: Bench, shape, filt, dname: str, f):
    label, pad, gain, grow = filt
    N, C, H, W = shape
    x = torch.randn(N, C, H + grow, W + grow, device=bn.dev, dtype=DTYPES[dname]).requires_grad_()
    out = H + grow + pad[2] + pad[3] - f.shape[0] + 1
    dy = torch.randn(N, C, out, out, device=bn.dev, dtype=x.dtype)
    traffic = (x.numel() + dy.numel()) * x.element_size()
    info = dict(filter=f"{label} pad {pad}", x=tuple(x.shape), dtype=dname)
    for mode, nbytes in (("fwd", traffic), ("fwd+bwd", 2 * traffic)):
        cases = [(impl, impl, maker(mode, partial(upfirdn2d, x, f, pad=pad, gain=gain, impl=impl), x, dy))
                 for impl in ("reference", "triton")]
        bn.impl_rows("upfirdn2d", dict(info, mode=mode), cases, nbytes, 1e6)


def bench_upfirdn2d(bn: Bench, args, dtypes):
    f = fir_filter(bn.dev)
    filters = [("up2 filter", up_pads(4, 3), 4.0, 1), ("down2 filter", down_pads(4, 3), 1.0, 0)]
    for shape in act_shapes(args):
        for filt in filters:
            for dname in dtypes:
                bench_upfirdn2d_case(bn, shape, filt, dname, f)
                bn.free()


# -- output ---------------------------------------------------------------------------------------

def num(v, spec: str = "", suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:{spec or ('.1f' if abs(v) >= 10 else '.3g')}}{suffix}"


def dims(shape) -> str:
    return "x".join(map(str, shape))


def table(bn: Bench, op: str) -> list[str]:
    """The op's rows as a markdown table."""
    mm = op == "modconv"
    ceiling = bn.mm_tflops if mm else bn.copy_gbs
    head = (["layer", "x", "y"] if mm else ["op", "shape"]) + ["dtype", "mode", "impl", "ms"] + \
        (["TFLOP/s", "% bf16 mm"] if mm else ["GB/s", "% copy"]) + ["speed-up"] + (["err"] if mm else []) + ["note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in bn.rows.get(op, []):
        if mm:
            what = [r["layer"], dims(r["x"]), dims(r["y"])]
        elif op == "bias_act":
            what = [f"lrelu+bias {r['layout']}", f"{dims(r['shape'])} ({math.prod(r['shape']) / 2 ** 20:.0f}M)"]
        else:
            what = [r["filter"], dims(r["x"])]
        cells = what + [r["dtype"], r["mode"], r["impl"], num(r["ms"], ".3f"), num(r["rate"]),
                        num(r["rate"] and 100 * r["rate"] / ceiling, ".0f", "%"),
                        num(r["base"] / r["ms"] if r["ms"] and r["base"] else None, ".2f", "x")]
        if mm:  # flagged where it exceeds the dtype's tolerance
            cells.append(num(r.get("err"), ".1e") + (" > tol" if (r.get("err") or 0) > TOL[r["dtype"]] else ""))
        lines.append("| " + " | ".join(cells + [r["note"] or ""]) + " |")
    return lines


def verdict(name: str, rows, key, ok, fmt: str, pick=min) -> str:
    """PASS / FAIL on the worst of key over rows (pick = min or max), with where it occurs."""
    rows = [r for r in rows if r["ms"] and key(r) is not None]
    if not rows:
        return f"- {name}: not measured (no such rows timed)"
    r = pick(rows, key=key)
    where = " ".join(dims(r[k]) if k == "shape" else r[k] for k in ("layer", "shape", "layout", "dtype", "mode", "impl")
                     if k in r)
    return f"- {name}: {'PASS' if ok(key(r)) else 'FAIL'} ({fmt.format(key(r))} at {where})"


def targets(bn: Bench, args) -> list[str]:
    out = ["## Targets (the issue's, set for an H100)", ""]
    if not bn.cuda:
        return out + ["- all targets: not measured (CPU)"]
    big = (args.batch, 128, 128, 128)
    m = f"{math.prod(big) >> 20}M elements"
    bound = {"fwd": "3.0x", "bwd": "1.67x"}  # unfused / fused traffic: 3 passes (6 x-sizes) vs 2; 2 passes (5) vs 3
    for impl in sorted({r["impl"] for r in bn.rows.get("bias_act", []) if r["impl"] in FAST and r["ms"]}):
        for mode in ("fwd", "bwd"):
            rows = [r for r in bn.rows["bias_act"] if (r["impl"], r["mode"], r["shape"]) == (impl, mode, big)]
            out.append(verdict(f"bias_act {impl} {mode} >= 80% of the copy bandwidth at {m}", rows,
                               lambda r: r["rate"] / bn.copy_gbs, lambda v: v >= 0.8, "min {:.0%}"))
            out.append(verdict(f"bias_act {impl} {mode} >= 2.5x the unfused reference at {m} (traffic bound "
                               f"{bound[mode]})", rows,
                               lambda r: r["base"] and r["base"] / r["ms"], lambda v: v >= 2.5, "min {:.2f}x"))
    if "modconv" in bn.rows:
        rows = [r for r in bn.rows["modconv"] if r["impl"] == "triton" and r["dtype"] == "bf16"]
        fb = [r for r in rows if r["mode"] == "fwd+bwd" and r["ms"] and r["base"]]
        out.append(verdict("modconv fwd+bwd >= 1.3x the grouped-conv reference on every layer (bf16)", fb,
                           lambda r: r["base"] / r["ms"], lambda v: v >= 1.3, "min {:.2f}x"))
        if fb:
            total = sum(r["base"] for r in fb) / sum(r["ms"] for r in fb)
            out.append(f"- modconv fwd+bwd >= 1.3x the grouped-conv reference summed over the {len(fb)} layers (bf16): "
                       f"{'PASS' if total >= 1.3 else 'FAIL'} ({total:.2f}x)")
        ref = max((r["err"] for r in bn.rows["modconv"] if r["impl"] == "grouped" and r["dtype"] == "bf16"
                   and r.get("err") is not None), default=None)
        out.append(verdict(f"modconv within bf16 tolerance (err <= {TOL['bf16']:g}; the grouped reference's own bf16 "
                           f"max err {num(ref, '.1e')})", rows, lambda r: r.get("err"), lambda v: v <= TOL["bf16"],
                           "max {:.1e}", max))
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ops", default="bias_act,modconv,upfirdn2d", help="comma-separated: bias_act, modconv, upfirdn2d")
    p.add_argument("--dtypes", default=None, help="comma-separated bf16, fp16, fp32 (default: all three for "
                   "bias_act and upfirdn2d, bf16 for modconv)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 32; 2 without CUDA)")
    p.add_argument("--resolution", type=int, default=None, help="G output resolution (default 1024; 32 without CUDA)")
    p.add_argument("--quick", action="store_true", help="few shapes and reps: a smoke run")
    p.add_argument("--reps", type=int, default=None, help="timed calls per row (default 20, --quick 5; CPU 5 / 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3, --quick 2; CPU 1)")
    p.add_argument("--out", default=None, help="also write the tables to this markdown file")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    args.batch = args.batch or (32 if cuda else 2)
    args.resolution = args.resolution or (1024 if cuda else 32)
    args.reps = args.reps or ((5 if args.quick else 20) if cuda else (3 if args.quick else 5))
    args.warmup = args.warmup if args.warmup is not None else ((2 if args.quick else 3) if cuda else 1)
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    bad = [o for o in args.ops if o not in DEFAULT_DTYPES] + [d for d in (args.dtypes or "").split(",") if d
                                                             and d not in DTYPES]
    if bad:
        p.error(f"unknown op or dtype {', '.join(bad)} (ops: {', '.join(DEFAULT_DTYPES)}; dtypes: {', '.join(DTYPES)})")
    if args.resolution < 8 or args.resolution & (args.resolution - 1):
        p.error("--resolution must be a power of two >= 8")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    bn = Bench(args)
    lines = ["# Kernel benchmark", ""] + [f"- {s}" for s in environment(bn) + measure_ceilings(bn)]
    print("\n".join(lines), flush=True)
    benches = {"bias_act": bench_bias_act, "modconv": bench_modconv, "upfirdn2d": bench_upfirdn2d}
    for op in args.ops:
        t = time.perf_counter()
        benches[op](bn, args, [d for d in (args.dtypes or DEFAULT_DTYPES[op]).split(",") if d])
        section = ["", f"## {op} (batch {args.batch}, resolution {args.resolution}, {time.perf_counter() - t:.0f} s)",
                   "", *table(bn, op)]
        print("\n".join(section), flush=True)
        lines += section
    summary = [""] + targets(bn, args)
    print("\n".join(summary), flush=True)
    if args.out:
        text = "\n".join(lines + summary) + "\n"
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
