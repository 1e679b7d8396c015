#!/usr/bin/env python
"""A scaling model for GAN training under DDP and ZeRO 1/2/3 (Rajbhandari et al. 2020, "ZeRO: Memory
Optimizations Toward Training Trillion Parameter Models", arXiv:1910.02054): memory per rank and bytes
sent per rank per step for each trained network, measured with two CPU processes (gloo) for the small
recipes beside the model, computed for StyleGAN2 1024² and BigGAN 128², and the predicted step time at
8, 64 and 512 GPUs. docs/scaling.md states the formulas, the assumptions and the results.

    python benchmarks/scaling.py                       # measure (two processes a run) + every table
    python benchmarks/scaling.py --model-only          # the computed tables only (seconds)
    python benchmarks/scaling.py --model-only --compute-ms stylegan2_1024=210   # a measured GPU step time
    python benchmarks/scaling.py --schemes ddp zero3 --recipes configs/mnist_dcgan.yaml

Each measured (recipe, scheme) is a two-process run (torch.distributed.run) of the real Trainer on
random in-memory images (step_time.py's feed). Memory: the tensors a rank holds for a network just
before its optimizer step, each storage once. Collectives: DeepSpeed's comms logger
(backend.comms_log=true), a communication hook on each network's DDP, and the trainer's buffer
broadcast; each is charged to the network whose engine, optimizer, module or parameter the calling
frames hold. Bytes sent follow from message sizes by the ring algorithms.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from hifigan.errors import UserError, run_main  # noqa: E402

BYTES = 4            # fp32: weights, gradients, master copy and Adam moments (mixed precision is autocast over fp32 weights)
MiB = 2 ** 20
DS_BUCKET = 50 * MiB          # backend.bucket_mb: DeepSpeed's reduce / all-gather bucket, and ZeRO-3's live-parameter limit
DDP_BUCKET, DDP_FIRST = 25 * MiB, 1 * MiB  # torch DDP's bucket_cap_mb and its first (smaller) bucket
SCHEMES = {"ddp": ["backend.name=accelerate"],
           "zero1": ["backend.name=deepspeed", "backend.zero_stage=1", "backend.comms_log=true"],
           "zero2": ["backend.name=deepspeed", "backend.zero_stage=2", "backend.comms_log=true"],
           "zero3": ["backend.name=deepspeed", "backend.zero_stage=3", "backend.comms_log=true"]}
RECIPES = ["configs/mnist_dcgan.yaml", "configs/stylegan2_mnist.yaml"]


# -- the model ----------------------------------------------------------------------------------
def ring_factor(op: str, n: int) -> float:
    """Bytes a rank sends per byte of the full message S (ring algorithms)."""
    return (2 if op == "all_reduce" else 1) * (n - 1) / n


def latency_hops(op: str, n: int, kind: str = "ring") -> float:
    """Sequential message steps of one collective: ring 2(N-1) (all-reduce) or N-1; tree about log2 N each way."""
    hops = n - 1 if kind == "ring" else math.ceil(math.log2(max(n, 2)))
    return (2 if op == "all_reduce" else 1) * hops


@dataclass(frozen=True)
class Use:
    """How one phase uses one network in each accumulation micro-step."""
    fwd: int = 0           # forward calls
    bwd: int = 0           # backward traversals of its modules (D in Gmain: input gradients only)
    trained: bool = False  # its gradients are reduced and it steps
    whole: bool = False    # second-order phase: ZeRO-3 parameters gathered once and held whole (the double backward)


USES = {"Dmain": {"G": Use(fwd=1), "D": Use(fwd=2, bwd=2, trained=True)},  # D on reals and on (detached) fakes
        "Gmain": {"G": Use(fwd=1, bwd=1, trained=True), "D": Use(fwd=1, bwd=1)},
        "Greg": {"G": Use(fwd=1, bwd=1, trained=True, whole=True)},
        "Dreg": {"D": Use(fwd=1, bwd=1, trained=True, whole=True)}}


@dataclass(frozen=True)
class Net:
    params: int
    tensors: tuple = ()     # parameter numels in module order ((): unknown, partitions taken as P/N)
    layers: int = 1         # modules that own parameters (ZeRO-3 fetches one module at a time)
    buffer_bytes: int = 0   # broadcast from rank 0 after every step
    buffers: int = 0


@dataclass
class Workload:
    name: str
    nets: dict               # name -> Net
    phases: list             # (name, every, repeats)
    ema: str = "G"           # ZeRO-3 gathers this network whole once per step for G_ema


def zero12_partition(P: int, n: int) -> int:
    """Elements of a rank's ZeRO-1/2 partition: the flat buffer is padded to a multiple of 2N."""
    return math.ceil(P / (2 * n)) * 2


def zero12_grad_bytes(net: Net, n: int) -> int:
    """Gradient bytes a ZeRO-1/2 rank holds at its step: the whole gradient of every parameter that
    overlaps its partition (the most over the ranks), or the partition itself when tensors are unknown."""
    part = zero12_partition(net.params, n)
    if not net.tensors:
        return BYTES * part
    best, start, bounds = 0, 0, []
    for t in net.tensors:
        bounds.append((start, start + t))
        start += t
    for r in range(n):
        lo, hi = r * part, (r + 1) * part
        best = max(best, sum(b - a for a, b in bounds if a < hi and b > lo))
    return BYTES * best


def zero3_partition(net: Net, n: int) -> int:
    """Elements of a rank's ZeRO-3 partitions: every parameter is split on its own, padded to N."""
    return sum(math.ceil(t / n) for t in net.tensors) if net.tensors else math.ceil(net.params / n)


def zero3_working_set(net: Net, whole: bool) -> int:
    """Parameter bytes a ZeRO-3 rank has gathered at once, beyond its partitions, while a phase uses the
    network: the whole network in a second-order phase (held for the double backward), otherwise about
    one bucket at most (the backend sets stage3_max_live_parameters and stage3_max_reuse_distance to the
    bucket size; what prefetch brings in ahead of use comes on top)."""
    W = BYTES * net.params
    return W if whole else min(W, DS_BUCKET)


def second_order(work: Workload, name: str) -> bool:
    """Whether one of the workload's phases runs a double backward through the network (R1, path length)."""
    return any(u.whole for p, _, _ in work.phases for x, u in USES.get(p, {}).items() if x == name)


def phase_working_set(work: Workload, names, whole: bool) -> int | None:
    """The most ZeRO-3 parameter bytes gathered at once by the networks in names, over the workload's
    second-order phases (whole=True) or its first-order ones; None when it has no such phase."""
    sets = [sum(zero3_working_set(work.nets[x], u.whole) for x, u in USES.get(p, {}).items() if x in names)
            for p, _, _ in work.phases if any(u.whole for u in USES.get(p, {}).values()) == whole]
    return max(sets) if sets else None


def memory_model(net: Net, n: int, scheme: str, whole: bool = False) -> dict:
    """Bytes a rank holds for one network just before its optimizer step (activations excluded).
    DDP keeps its gradient buckets beside the gradients (gradient_as_bucket_view off); ZeRO-1/2 keep an
    fp32 master partition beside the fp32 weights; ZeRO-3 keeps one beside its weight partition too,
    and while a phase runs gathers at most about a bucket of parameters, or the whole network in a
    second-order phase (whole: the network has one) -- "gathered" is the peak over a step's phases."""
    W = BYTES * net.params
    if scheme == "ddp":
        return {"weights": W, "grads": W, "master": 0, "optimizer": 2 * W, "buckets": W, "gathered": 0}
    if scheme in ("zero1", "zero2"):
        part = BYTES * zero12_partition(net.params, n)
        return {"weights": W, "grads": zero12_grad_bytes(net, n), "master": part, "optimizer": 2 * part,
                "buckets": 0, "gathered": 0}
    part = BYTES * zero3_partition(net, n)
    return {"weights": part, "grads": part, "master": part, "optimizer": 2 * part, "buckets": 0,
            "gathered": zero3_working_set(net, whole)}


def held(mem: dict) -> int:
    """What stays allocated between phases: everything but ZeRO-3's transient gathered weights."""
    return sum(v for k, v in mem.items() if k != "gathered")


def buckets(nbytes: float, size: int, first: int = 0) -> int:
    """Collective calls to move `nbytes` in buckets of `size` (after a first bucket of `first`)."""
    if nbytes <= 0:
        return 0
    return 1 + math.ceil(max(nbytes - first, 0) / size) if first else math.ceil(nbytes / size)


def collectives(work: Workload, name: str, n: int, scheme: str, accum: int = 1) -> list:
    """(op, full message bytes per step, calls per step) that one network causes, amortized over the
    lazy phases. ZeRO-1/2 reduce gradients with an all-reduce (DeepSpeed's multi-rank bucket all-reduce,
    its default) and all-gather the updated partitions; ZeRO-2 and -3 reduce in every micro-step; ZeRO-3
    gathers the weights in every forward and backward that touches the network (an upper bound:
    DeepSpeed keeps some gathered between them)."""
    net, out = work.nets[name], []
    W = BYTES * net.params
    for phase, every, repeats in work.phases:
        u = USES.get(phase, {}).get(name)
        if u is None:
            continue
        runs, a = repeats / every, accum
        if scheme == "ddp" and u.trained:
            out.append(("all_reduce", W * runs, runs * buckets(W, DDP_BUCKET, DDP_FIRST)))
        elif scheme in ("zero1", "zero2") and u.trained:
            k = a if scheme == "zero2" else 1
            out += [("all_reduce", W * runs * k, runs * k * buckets(W, DS_BUCKET)),
                    ("all_gather", W * runs, runs * buckets(W, DS_BUCKET)), ("all_reduce", 4 * runs, runs)]
        elif scheme == "zero3":
            gathers = a * (1 if u.whole else u.fwd + u.bwd)
            calls = len(net.tensors) if u.whole and net.tensors else net.layers
            out.append(("all_gather", W * gathers * runs, gathers * calls * runs))
            if u.trained:
                out += [("reduce_scatter", W * a * runs, a * runs * buckets(W, DS_BUCKET)), ("all_reduce", 8 * runs, runs)]
    if scheme == "zero3" and name == work.ema:
        out.append(("all_gather", W, len(net.tensors) or net.layers))
    out.append(("broadcast", net.buffer_bytes, net.buffers))
    return out


def sent_bytes(colls: list, n: int) -> float:
    return sum(ring_factor(op, n) * size for op, size, _ in colls)


@dataclass
class Cluster:
    """The interconnect the prediction assumes (bytes/s per GPU and direction)."""
    intra: float = 450e9     # NVLink 4 (H100/H200 SXM): 900 GB/s both ways, 450 GB/s each way
    inter: float = 50e9      # 8 x 400 Gb/s InfiniBand per node of 8 GPUs: 50 GB/s a GPU
    per_node: int = 8
    alpha: float = 10e-6     # seconds per message step
    latency: str = "ring"

    def bandwidth(self, n: int) -> float:
        return self.intra if n <= self.per_node else self.inter


def comm_time(colls: list, n: int, c: Cluster) -> tuple[float, float]:
    """(bandwidth seconds, latency seconds) of one step's collectives."""
    bw = sent_bytes(colls, n) / c.bandwidth(n)
    lat = sum(calls * c.alpha * latency_hops(op, n, c.latency) for op, _, calls in colls)
    return bw, lat


@dataclass
class Scaling:
    """How the batch grows with the GPUs and what one GPU's compute costs at a reference batch."""
    compute_ms: float        # one training step's compute on one GPU at `ref_images` per GPU
    ref_images: int
    source: str              # where compute_ms comes from
    per_gpu: int = 0         # weak scaling: images per GPU (global batch = N x per_gpu)
    global_batch: int = 0    # strong scaling: fixed global batch, micro-batches of at most `micro`
    micro: int = 32

    def images(self, n: int) -> float:
        return self.per_gpu if self.per_gpu else self.global_batch / n

    def accum(self, n: int) -> int:
        return 1 if self.per_gpu else max(1, math.ceil(self.images(n) / self.micro))


def predict_step(work: Workload, sc: Scaling, n: int, scheme: str, c: Cluster) -> dict:
    accum = sc.accum(n)
    colls = [x for name in work.nets for x in collectives(work, name, n, scheme, accum)]
    colls += [("all_reduce", 4 * r / e, r / e) for _, e, r in work.phases]  # the trainer's non-finite flag
    bw, lat = comm_time(colls, n, c)
    compute = sc.compute_ms / 1000 * sc.images(n) / sc.ref_images
    return {"n": n, "images": sc.images(n), "accum": accum, "compute": compute, "bytes": sent_bytes(colls, n),
            "bw": bw, "lat": lat, "serial": compute + bw + lat, "overlap": max(compute, bw + lat)}


# -- the full-size workloads ----------------------------------------------------------------------
def recipe_phases(cfg) -> list:
    """(name, every, repeats) of a recipe's phases (its objective's defaults when it names none)."""
    from hifigan.registry import OBJECTIVES
    phases = cfg.phases or OBJECTIVES.get(cfg.objective.name)(cfg.objective.cfg).default_phases
    return [(p.name, p.every, p.repeats) for p in phases]


def recipe_nets(path: str) -> tuple:
    """G and D of a recipe built on the meta device (no memory), and its phases."""
    from hifigan import budget
    from hifigan.config import load_config
    from hifigan.registry import NETWORKS
    cfg = load_config(ROOT / path, [])
    nets = {n: describe(budget.build_on_meta(NETWORKS[n].get(getattr(cfg, n).name), getattr(cfg, n).cfg))
            for n in ("G", "D")}
    return nets, recipe_phases(cfg)


def describe(m: torch.nn.Module) -> Net:
    sizes = [getattr(p, "ds_numel", p.numel()) for p in m.parameters()]  # ZeRO-3 leaves p.numel() at 0
    return Net(params=sum(sizes), tensors=tuple(sizes),
               layers=sum(1 for mod in m.modules() if any(True for _ in mod.parameters(recurse=False))),
               buffer_bytes=sum(b.numel() * b.element_size() for b in m.buffers()), buffers=len(list(m.buffers())))


def full_size_workloads() -> list:
    """StyleGAN2 1024² from its recipe (weak scaling, 4 images a GPU) and BigGAN 128² from the reference
    implementation's counts (global batch 2048: 256 x 8 accumulations on 8 GPUs)."""
    nets, phases = recipe_nets("configs/stylegan2_ffhq.yaml")
    sg = (Workload("stylegan2_1024", nets, phases),
          Scaling(compute_ms=632.0, ref_images=4, per_gpu=4,
                  source="PLACEHOLDER: one V100, StyleGAN2-ADA 1024² at 4 images/GPU, 154.3-161.6 s/kimg "
                         "(NVlabs stylegan2-ada-pytorch README) -> 0.632 s/step; pending a measured GPU step"))
    big_nets = {"G": Net(70_433_988, layers=44), "D": Net(87_982_370, layers=24)}
    big = (Workload("biggan_128", big_nets, [("Dmain", 1, 1), ("Gmain", 1, 1)]),
           Scaling(compute_ms=8640.0, ref_images=256, global_batch=2048, micro=32,
                   source="PLACEHOLDER: 8 V100 fp32, 15 days for 150k steps of 2048 images (BigGAN-PyTorch "
                          "README) -> 8.64 s/step at 256 images/GPU; pending a measured GPU step"))
    return [sg, big]


# -- measurement: one process of a two-rank run ---------------------------------------------------
def storage_key(t: torch.Tensor):
    """(address, bytes) of the memory `t` views; None for a tensor without memory (meta, freed)."""
    st = t.untyped_storage() if t.device.type != "meta" else None
    return (st.data_ptr(), st.nbytes()) if st is not None and st.nbytes() else None


def reachable(obj, out: list, seen: set, depth: int = 0) -> list:
    """Every tensor reachable from a DeepSpeed / torch.optim object through attributes, lists and dicts
    (modules are not entered: their parameters are walked on their own)."""
    if obj is None or id(obj) in seen or depth > 6 or isinstance(obj, torch.nn.Module):
        return out
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (dict, list, tuple)):
        for v in (obj.values() if isinstance(obj, dict) else obj):
            reachable(v, out, seen, depth + 1)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith(("deepspeed", "torch.optim", "torch.amp")):
        for v in vars(obj).values():
            reachable(v, out, seen, depth + 1)
    return out


def held_memory(h) -> dict:
    """Bytes this rank holds for one network by kind, each storage once (the first kind wins): weights
    (parameters; ZeRO-3: partitions and whatever is gathered), master (the ZeRO optimizer's fp32 copy),
    grads (p.grad, DeepSpeed's grad_accum and gradient partitions), optimizer (the torch optimizer's
    state), other (anything else the ZeRO optimizer or engine keeps)."""
    engine = getattr(h, "engine", None)
    zopt = engine.optimizer if engine is not None else None
    kinds = defaultdict(list)
    for p in h.module.parameters():
        kinds["weights"] += [p.data] + ([p.ds_tensor] if hasattr(p, "ds_tensor") else [])
        kinds["grads"] += [t for t in (p.grad, getattr(p, "grad_accum", None)) if t is not None]
    if zopt is not None:
        for attr in ("single_partition_of_fp32_groups", "fp32_partitioned_groups_flat"):
            kinds["master"] += list(getattr(zopt, attr, None) or [])
        kinds["grads"] += [t.grad for t in kinds["master"] if t.grad is not None]
        for attr in ("averaged_gradients", "grad_partitions_flat_buffer", "all_grad_tensors"):
            reachable(getattr(zopt, attr, None), kinds["grads"], set())
    for state in (zopt.optimizer if zopt is not None else h.opt).state.values():
        kinds["optimizer"] += [v for v in state.values() if isinstance(v, torch.Tensor)]
    kinds["other"] = reachable(engine, reachable(zopt, [], set()), set())
    counted, out = set(), {}
    for kind in ("weights", "master", "grads", "optimizer", "other"):
        keys = {storage_key(t) for t in kinds[kind]} - counted - {None}
        counted |= keys
        out[kind] = sum(k[1] for k in keys)
    return out


class CommLog:
    """Every collective of the measured steps as (network, op, message bytes as logged, phase)."""

    def __init__(self, tr):
        self.records, self.on, self.phase, self.owner = [], False, "after", {}
        self.buckets = defaultdict(dict)
        for name, h in tr.handles.items():
            objs = [*h.module.modules(), *h.module.parameters()]
            e = getattr(h, "engine", None)
            if e is not None:
                offload = getattr(e.optimizer, "parameter_offload", None)
                objs += [e, e.optimizer, getattr(e.optimizer, "optimizer", None), offload]
                objs += list(getattr(offload, "param_coordinators", {}).values()) if offload is not None else []
            self.owner.update({id(o): name for o in objs if o is not None})

    def add(self, net: str, op: str, nbytes: int) -> None:
        if self.on:
            self.records.append((net, op, int(nbytes), self.phase))

    def network_on_stack(self) -> str:
        """The network whose engine, optimizer, module or parameter the innermost library frame holds;
        the walk stops at hifigan's own frames (their locals name whatever the trainer looped over last)."""
        f = sys._getframe(2)
        while f is not None and not f.f_code.co_filename.startswith(str(ROOT / "hifigan")):
            for v in f.f_locals.values():
                name = self.owner.get(id(v))
                if name is None and isinstance(v, (list, tuple)) and v:
                    name = self.owner.get(id(v[0]))
                if name is not None:
                    return name
            f = f.f_back
        return "unattributed"

    def attach(self, tr, scheme: str) -> None:
        import torch.distributed as dist
        if scheme == "ddp":  # a communication hook counts each bucket, then DDP's own all-reduce
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
            for name, h in tr.handles.items():
                def hook(state, bucket, name=name):
                    buf = bucket.buffer()
                    self.add(name, "all_reduce", buf.numel() * buf.element_size())
                    self.buckets[name][bucket.index()] = buf.untyped_storage().nbytes()  # DDP rebuilds them once
                    return default_hooks.allreduce_hook(state, bucket)
                h.wrapped.register_comm_hook(None, hook)
        else:  # DeepSpeed's comms logger (prof_all) records every collective it issues
            from deepspeed.comm import comm as ds_comm
            ds_comm.comms_logger.append = lambda raw, rec, latency, size: self.add(self.network_on_stack(), raw, size)
        b, names = tr.backend, {id(net): n for n, net in tr.nets.items()}
        sync, bcast = b.sync_buffers, dist.broadcast

        def sync_buffers(net):  # the trainer's broadcast of rank 0's buffers after each step
            def broadcast(t, *a, **k):
                self.add(names[id(net)], "broadcast", t.numel() * t.element_size())
                return bcast(t, *a, **k)
            dist.broadcast = broadcast
            try:
                sync(net)
            finally:
                dist.broadcast = bcast
        b.sync_buffers = sync_buffers
        run_phase = tr.run_phase

        def tagged(ph):
            self.phase = ph.name
            try:
                return run_phase(ph)
            finally:
                self.phase = "after"
        tr.run_phase = tagged


def watch(tr, mem: dict, gathered: dict) -> None:
    """Each network's memory just before its optimizer step (the most per kind over the steps), and
    under ZeRO-3 the most parameter bytes materialized at once as each sub-module's forward starts."""
    for name, h in tr.handles.items():
        params = list(h.module.parameters())
        if hasattr(params[0], "ds_tensor"):
            def pre(mod, args, name=name, params=params):
                gathered[name] = max(gathered.get(name, 0), sum(p.data.numel() * p.data.element_size() for p in params))
            for m in h.module.modules():
                m.register_forward_pre_hook(pre)

        def stepped(joint=(), loss_finite=True, step=h.step, h=h):
            for x in (h, *joint):
                cur = mem.setdefault(x.name, {})
                for k, v in held_memory(x).items():
                    cur[k] = max(cur.get(k, 0), v)
            return step(joint=joint, loss_finite=loss_finite)
        h.step = stepped


def worker(recipe: str, scheme: str, out: str, warmup: int, steps: int, batch: int, accum: int) -> None:
    from hifigan.config import load_config
    from step_time import random_feed_trainer
    tmp = tempfile.TemporaryDirectory()  # the run dir (nothing is written to it)
    cfg = load_config(ROOT / recipe, [f"run_dir={tmp.name}", "log.progress=false", "train.threads=1",
                                      f"train.batch_size={batch}", f"train.batch_gpu={batch // 2 // accum}",
                                      *SCHEMES[scheme]])
    tr = random_feed_trainer(cfg)
    log, mem, gathered = CommLog(tr), {}, {}
    log.attach(tr, scheme)
    for _ in range(warmup):
        tr.train_step()
    watch(tr, mem, gathered)
    tr.step, log.on, runs = 0, True, Counter()  # every phase runs at step 0; `steps` spans the lazy periods
    for _ in range(steps):
        runs.update(ph.name for ph in tr.phases if tr.step % ph.every == 0)
        tr.train_step()
    log.on = False
    for name in mem:
        mem[name].update(buckets=sum(log.buckets[name].values()), gathered=gathered.get(name, 0))
    nets = {n: describe(h.module).__dict__ for n, h in tr.handles.items()}
    mine = {"records": log.records, "memory": mem, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    ranks = tr.backend.gather_object(mine)
    if tr.backend.is_main:
        Path(out).write_text(json.dumps({
            "recipe": recipe, "scheme": scheme, "world": tr.backend.world, "steps": steps, "runs": runs,
            "accum": tr.accum, "nets": nets, "ranks": ranks,
            "phases": [(p.name, p.every, p.repeats) for p in tr.phases]}))
    tr.backend.close()
    tmp.cleanup()


def launch(recipe: str, scheme: str, batch: int, accum: int, steps: int, tmp: str) -> dict:
    """One two-process run of `worker` under torch.distributed.run; its JSON."""
    out = Path(tmp) / f"{Path(recipe).stem}-{scheme}.json"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1", f"--master_port={port}",
           __file__, "--worker", recipe, scheme, str(out), "1", str(steps), str(batch), str(accum)]
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if r.returncode == 0 and out.exists():
        return json.loads(out.read_text())
    said = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    if said:  # the trainer refused the settings (UserError): its own line
        raise UserError(f"{recipe} under {scheme}: {said[0][7:]}")
    raise RuntimeError(f"{recipe} under {scheme} failed (exit {r.returncode}):\n{r.stderr[-6000:]}")


# -- tables -------------------------------------------------------------------------------------
OPS = {"all_gather_into_tensor": "all_gather", "reduce_scatter_tensor": "reduce_scatter"}


def md(cols: list, rows: list) -> str:
    """A markdown table."""
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] +
                     ["| " + " | ".join(str(x) for x in r) + " |" for r in rows])


def mib(b: float) -> str:
    return f"{b / MiB:.2f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def measured_workload(res: dict) -> Workload:
    nets = {n: Net(**{**d, "tensors": tuple(d["tensors"])}) for n, d in res["nets"].items()}
    return Workload(Path(res["recipe"]).stem, nets, [tuple(p) for p in res["phases"]])


def measured_colls(res: dict, net: str) -> dict:
    """op -> [calls, whole-message bytes] per step for one network, from rank 0's records (DeepSpeed
    logs an all-gather by its input, one rank's shard: x N)."""
    out, n = defaultdict(lambda: [0.0, 0.0]), res["world"]
    for name, op, size, _ in res["ranks"][0]["records"]:
        if name == net:
            op = OPS.get(op, op)
            out[op][0] += 1 / res["steps"]
            out[op][1] += size * (n if op == "all_gather" else 1) / res["steps"]
    return out


def memory_table(results: list) -> str:
    rows = []
    for res in results:
        work, n = measured_workload(res), res["world"]
        for net in work.nets:
            m = max((r["memory"][net] for r in res["ranks"]), key=lambda x: x["weights"] + x["grads"] + x["master"])
            model = memory_model(work.nets[net], n, res["scheme"], second_order(work, net))
            got = sum(m[k] for k in ("weights", "grads", "master", "optimizer", "other", "buckets"))
            rows.append([work.name, res["scheme"], net, f"{work.nets[net].params:,}",
                         *(mib(m[k]) for k in ("weights", "grads", "master", "optimizer", "buckets")),
                         mib(got), mib(held(model)), ratio(got, held(model)),
                         f"{mib(m['gathered'])} / {mib(model['gathered'])}" if res["scheme"] == "zero3" else "",
                         " / ".join(mib(r["rss"]) for r in res["ranks"])])
    return md(["recipe", "scheme", "net", "params", "weights", "grads", "fp32 master", "Adam", "DDP buckets",
               "held: measured", "model", "ratio", "ZeRO-3 gathered peak: measured / model",
               "process peak RSS, ranks 0 / 1"], rows)


def comm_table(results: list) -> str:
    rows = []
    for res in results:
        work, n = measured_workload(res), res["world"]
        for net in sorted({r[0] for r in res["ranks"][0]["records"]} | set(work.nets)):
            got = measured_colls(res, net)
            sent = sum(ring_factor(op, n) * size for op, (_, size) in got.items())
            colls = collectives(work, net, n, res["scheme"], res["accum"]) if net in work.nets else []
            rows.append([work.name, res["scheme"], net,
                         ", ".join(f"{op} {c:.2f} ({mib(size)})" for op, (c, size) in sorted(got.items())),
                         f"{sum(c for c, _ in got.values()):.1f} / {sum(c for _, _, c in colls):.1f}",
                         mib(sent), mib(sent_bytes(colls, n)), ratio(sent, sent_bytes(colls, n))])
    return md(["recipe", "scheme", "net", "measured: op calls a step (MiB a step)", "calls a step: measured / model",
               "sent/rank/step: measured MiB", "model MiB", "ratio"], rows)


def zero3_table(results: list) -> str:
    """Whole-network all-gathers per phase run under ZeRO-3: measured vs the model's upper bound."""
    rows = []
    for res in (r for r in results if r["scheme"] == "zero3"):
        work, runs = measured_workload(res), {**res["runs"], "after": res["steps"]}
        for net, d in work.nets.items():
            per = defaultdict(float)
            for name, op, size, phase in res["ranks"][0]["records"]:
                if name == net and OPS.get(op, op) == "all_gather":
                    per[phase] += size * res["world"] / (BYTES * d.params) / runs[phase]
            for phase in [*(p for p, _, _ in work.phases), "after"]:
                u = USES.get(phase, {}).get(net)
                model = int(net == work.ema) if phase == "after" else \
                    (0 if u is None else 1 if u.whole else u.fwd + u.bwd) * res["accum"]
                if per.get(phase) or model:
                    rows.append([work.name, net, "after the phases (G_ema)" if phase == "after" else phase,
                                 runs[phase], f"{per.get(phase, 0):.2f}", model])
    return md(["recipe", "net", "phase", "runs", "whole-network gathers per run: measured", "model"], rows)


def full_tables(work: Workload, sc: Scaling, ns: list) -> tuple:
    """(memory GiB, GB sent per step (calls)) per scheme and network at each N; ZeRO-3's memory also
    gives the parameters gathered at once inside a regularization (second-order) phase and inside the
    main (first-order) phases, "-" where the network takes part in no such phase."""
    mem, comm = [], []
    gib = lambda b: "-" if b is None else f"+{b / 2 ** 30:.2f}"  # noqa: E731
    for scheme in SCHEMES:
        for net in [*work.nets, "G + D"]:
            names = list(work.nets) if net == "G + D" else [net]
            extra = ""
            if scheme == "zero3":
                extra = f" ({gib(phase_working_set(work, names, True))} / {gib(phase_working_set(work, names, False))})"
            mems = [[memory_model(work.nets[x], n, scheme, second_order(work, x)) for x in names] for n in ns]
            mem.append(["", scheme, net, *(f"{sum(held(m) for m in ms) / 2 ** 30:.2f}{extra}" for ms in mems)])
            if net in work.nets:
                cs = [(collectives(work, net, n, scheme, sc.accum(n)), n) for n in ns]
                comm.append(["", scheme, net, *(f"{sent_bytes(c, n) / 1e9:.3f} ({sum(x[2] for x in c):.0f})" for c, n in cs)])
    cols = [work.name, "scheme", "net", *(f"N={n}" for n in ns)]
    return md(cols, mem), md(cols, comm)


def step_table(work: Workload, sc: Scaling, ns: list, c: Cluster) -> str:
    rows = []
    for scheme in SCHEMES:
        for n in ns:
            p = predict_step(work, sc, n, scheme, c)
            rows.append([work.name, scheme, n, f"{p['images']:g} ({p['accum']})", f"{p['compute'] * 1e3:.0f}",
                         f"{p['bytes'] / 1e9:.3f}", f"{p['bw'] * 1e3:.1f}", f"{p['lat'] * 1e3:.1f}",
                         f"{p['serial'] * 1e3:.0f}", f"{p['overlap'] * 1e3:.0f}",
                         f"{p['compute'] / p['serial']:.2f} / {p['compute'] / p['overlap']:.2f}"])
    return md(["model", "scheme", "GPUs", "images/GPU (accum)", "compute ms", "sent/rank/step GB",
               "comm: bandwidth ms", "latency ms", "step, no overlap ms", "step, full overlap ms",
               "efficiency (no / full overlap)"], rows)


# -- the command line ----------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see --help)")


def positive(what: str, v: float, zero_ok: bool = False) -> float:
    if not math.isfinite(v) or v < 0 or (v == 0 and not zero_ok):
        raise UserError(f"{what}: must be a finite number {'>= 0' if zero_ok else '> 0'}")
    return v


def check(a, workloads: list) -> Cluster:
    """One line for anything the run cannot use; the cluster the prediction assumes."""
    for s in a.schemes:
        if s not in SCHEMES:
            raise UserError(f"--schemes {s}: unknown (choose from {', '.join(SCHEMES)})")
    for n in a.gpus:
        if n < 1:
            raise UserError(f"--gpus {n}: a GPU count is at least 1")
    if a.accum < 1 or a.batch < 2 * a.accum or a.batch % (2 * a.accum):
        raise UserError(f"--batch {a.batch} --accum {a.accum}: the batch must be a multiple of 2 ranks x "
                        f"{max(a.accum, 1)} micro-steps")
    names = {w.name: sc for w, sc in workloads}
    for item in a.compute_ms:
        name, _, ms = item.partition("=")
        if name not in names:
            raise UserError(f"--compute-ms {item}: give WORKLOAD=MS with WORKLOAD one of {', '.join(names)}")
        try:
            names[name].compute_ms = positive(f"--compute-ms {item}", float(ms))
        except ValueError:
            raise UserError(f"--compute-ms {item}: {ms!r} is not a number of milliseconds") from None
        names[name].source = "given with --compute-ms"
    if a.gpus_per_node < 1:
        raise UserError(f"--gpus-per-node {a.gpus_per_node}: at least 1")
    a.steps = {r: check_recipe(r) for r in a.recipes}
    return Cluster(intra=positive(f"--intra-gbs {a.intra_gbs}", a.intra_gbs) * 1e9, per_node=a.gpus_per_node,
                   inter=positive(f"--inter-gbs {a.inter_gbs}", a.inter_gbs) * 1e9, latency=a.latency,
                   alpha=positive(f"--alpha-us {a.alpha_us}", a.alpha_us, zero_ok=True) * 1e-6)


def check_recipe(path: str) -> int:
    """The recipe's longest lazy period (the steps a measurement needs); one line if the model cannot
    describe it (other networks, other phases)."""
    from hifigan.config import load_config
    if not (ROOT / path).is_file():
        raise UserError(f"--recipes {path}: no such file under {ROOT}")
    cfg = load_config(ROOT / path, [])
    phases = recipe_phases(cfg)
    odd = [p for p, _, _ in phases if p not in USES] + [n for n in cfg.optim if n not in ("G", "D")]
    if odd:
        raise UserError(f"--recipes {path}: {', '.join(odd)} not in the model (it knows G and D in phases "
                        f"{', '.join(USES)})")
    return max([4] + [e for _, e, _ in phases])


def measure_all(a) -> list:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in a.recipes:
            for scheme in a.schemes:
                print(f"measuring {recipe} under {scheme} (2 processes) ...", file=sys.stderr, flush=True)
                results.append(launch(recipe, scheme, a.batch, a.accum, a.steps[recipe], tmp))
    return results


def report(a, results: list, workloads: list, c: Cluster) -> None:
    if results:
        print(f"\n### Measured: two processes (gloo, one thread each), global batch {a.batch}, {a.accum} "
              f"micro-step(s); torch {torch.__version__}\n")
        print("Memory per rank (MiB), held just before each network's optimizer step, the larger rank:\n")
        print(memory_table(results))
        print("\nCommunication per rank per step (N = 2):\n")
        print(comm_table(results))
        if any(r["scheme"] == "zero3" for r in results):
            print("\nZeRO-3 all-gathers by phase:\n")
            print(zero3_table(results))
    print("\n### Computed: memory per rank (GiB; ZeRO-3: held (+ gathered at once in a regularization phase / "
          "+ in the main phases)), activations excluded\n")
    full = [full_tables(work, sc, a.gpus) for work, sc in workloads]
    print("\n\n".join(m for m, _ in full))
    print("\n### Computed: GB sent per rank per step (collective calls a step), the batch as in the step-time "
          "tables\n")
    print("\n\n".join(c for _, c in full))
    where = "ring: 2(N-1) or N-1 steps" if c.latency == "ring" else "tree: about log2 N steps each way"
    print(f"\n### Predicted step time: bandwidth {c.intra / 1e9:g} GB/s per GPU within a node of {c.per_node}, "
          f"{c.inter / 1e9:g} GB/s across nodes; {c.alpha * 1e6:g} us per message step ({where})\n")
    for work, sc in workloads:
        print(f"{work.name} compute: {sc.compute_ms:g} ms at {sc.ref_images} images/GPU: {sc.source}\n")
        print(step_table(work, sc, a.gpus, c) + "\n")


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":  # a rank of a measured run
        w = sys.argv[2:]
        return run_main(worker, w[0], w[1], w[2], *map(int, w[3:7]))
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-only", action="store_true", help="skip the measured runs: computed tables only")
    p.add_argument("--recipes", nargs="+", default=RECIPES, help="recipes to measure (G and D; phases Gmain, Greg, Dmain, Dreg)")
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), help="ddp, zero1, zero2, zero3")
    p.add_argument("--batch", type=int, default=8, help="global batch of the measured runs (two ranks)")
    p.add_argument("--accum", type=int, default=1, help="accumulation micro-steps of the measured runs")
    p.add_argument("--gpus", nargs="+", type=int, default=[8, 64, 512], help="GPU counts of the computed tables")
    p.add_argument("--compute-ms", nargs="+", default=[], metavar="WORKLOAD=MS",
                   help="one GPU's compute per training step at the workload's reference images/GPU "
                        "(stylegan2_1024: 4; biggan_128: 256), e.g. stylegan2_1024=210")
    p.add_argument("--intra-gbs", type=float, default=450.0, help="GB/s per GPU and direction within a node")
    p.add_argument("--inter-gbs", type=float, default=50.0, help="GB/s per GPU and direction across nodes")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--alpha-us", type=float, default=10.0, help="latency per message step, microseconds")
    p.add_argument("--latency", choices=["ring", "tree"], default="ring", help="message steps per collective")

    def run():
        a = p.parse_args(argv)
        workloads = full_size_workloads()
        c = check(a, workloads)
        results = [] if a.model_only else measure_all(a)
        report(a, results, workloads, c)
    return run_main(run)


if __name__ == "__main__":
    sys.exit(main())
