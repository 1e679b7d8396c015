"""The DeepSpeed backend (`backend.name: deepspeed`): every trained network is a DeepSpeed engine of
its own, with its own ZeRO stage (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward
Training Trillion Parameter Models", arXiv:1910.02054), optimizer, gradient clipping, mixed
precision and optional CPU offload of the optimizer (Ren et al. 2021, ZeRO-Offload, arXiv:2101.06840).

Stage 0 all-reduces gradients (as DDP); 1 partitions the optimizer states over the ranks; 2 also
the gradients; 3 also the parameters, which are gathered per layer as the forward and backward need
them. A recipe picks one stage for all networks (`backend.zero_stage`) and may override it per
network (`backend.nets: {D: {zero_stage: 1}}`).

Workarounds, each for an upstream report about GANs (or other multi-model training) under DeepSpeed:
- One loss crosses engines (G's loss runs through D; InfoGAN's Qmain trains G and Q together;
  DeepSpeed issue 4923 "ZeRO-2 GAN: NoneType when a loss crosses engines", DeepSpeedExamples 193
  "ZeRO-3 GAN"). The trainer turns requires_grad off for every network a phase does not train, so an
  engine's gradient hooks fire only in its own phases; the phase's first handle runs the backward and
  every engine of the phase is told the accumulation boundary and stepped.
- A parameter a phase leaves without a gradient (InfoGAN's Qmain does not use D's real/fake output)
  gets a zero gradient from DeepSpeed, so Adam still moves it by its momentum; DDP and one process
  leave it alone (torch's Adam skips a parameter whose .grad is None). Recipes whose phases use every
  parameter they train (DCGAN, StyleGAN2, InfoGAN with a separate Q) match DDP bit for bit; InfoGAN
  with Q on D's trunk does not. Not worked around: it would mean restoring partitioned Adam moments.
- Several engines in one process (Accelerate issue 253 "one Accelerator, two DeepSpeed models",
  Lightning issue 19773): the process group is set up once here and every engine is built with
  dist_init_required=False and a config of its own; no Accelerator object is involved.
- Phases run at different rates (lazy R1 every 16 steps), so an engine's own micro-step counter cannot
  know where a phase's accumulation ends: the boundary is set explicitly for every micro-step
  (set_gradient_accumulation_boundary) and the trainer scales the loss itself (scale_wrt_gas=False).
- Mixed precision is torch.autocast over fp32 weights (DeepSpeed's `torch_autocast` mode), not its
  fp16/bf16 mode that casts the modules to half: G_ema averages, the R1 / path-length double
  backward and networks called outside their engine (D inside a G phase) keep fp32 weights, as under
  the Accelerate backend. fp16 gets the ZeRO optimizer's own GradScaler (one per engine). When
  ZeRO's overflow check (the gradient norm) skips a step first, that GradScaler never sees the
  overflow and keeps its scale, so every later step overflows again: the backend backs it off itself.
- DeepSpeed refuses fp16 on a CPU without AMX-FP16 ("Type fp16 is not supported on your device")
  for its half-precision mode; the autocast mode used here runs on any CPU (slowly: use bf16 there).
- DeepSpeed broadcasts rank 0's weights as each engine starts by viewing every parameter as bytes,
  which fails for 0-dim parameters ("self.dim() cannot be 0 to view Float as Byte"; StyleGAN2 has
  them): the engine's broadcast and ZeRO-3's per-parameter conversion use a plain broadcast instead
  (broadcast_model, zero_init_param).
- On CPUs DeepSpeed JIT-compiles a shared-memory all-reduce at start (about a minute on a fresh
  machine) that sums in an order of its own; gloo's all-reduce is kept, as under the Accelerate backend.
- Checkpoints: every rank's optimizer partition is gathered into the checkpoint's state.pt, with
  DeepSpeed's own objects (its loss scaler, enums) stored as plain values, so the file loads with
  torch.load(weights_only=True) like every other checkpoint; resuming needs the same world size and
  stage (a one-line error says so otherwise).
- The non-finite guard (train.max_nonfinite) under DeepSpeed: a non-finite loss is multiplied into
  every gradient of the phase (loss * nan), so the engines' own overflow check skips the step on every
  rank; the trainer counts what the engines skipped (engine.skipped_steps) and never steps twice.
"""
from __future__ import annotations

import contextlib
import enum
import logging
import os
import typing
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.registry import BACKENDS
from hifigan.schema import bounded
from hifigan.train import process
from hifigan.train.backend import OptimizerSettings, TorchCollectives
from hifigan.train.phases import OptimPlan, build_optimizer

TESTED = "0.19"  # the DeepSpeed minor version the workarounds below were written against
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(kw_only=True)
class NetSettings:
    """Per-network overrides of the backend's defaults (unset: the default)."""
    zero_stage: typing.Optional[int] = bounded(None, ge=0, le=3)  # this network's ZeRO stage
    offload: typing.Optional[bool] = None                         # this network's optimizer on the CPU


def autocast_forward(net: nn.Module, device_type: str, dtype: torch.dtype) -> None:
    """Run `net`'s forward under torch.autocast and hand back fp32 outputs, whether it is called through
    its engine or bare (a network a phase does not train)."""
    inner = net.forward

    def forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            out = inner(*args, **kwargs)
        return _to_fp32(out)

    net.forward = forward


def _to_fp32(x):
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() and x.dtype != torch.float64 else x
    if isinstance(x, (list, tuple)):
        return type(x)(_to_fp32(v) for v in x)
    if isinstance(x, dict):
        return {k: _to_fp32(v) for k, v in x.items()}
    return x


def broadcast_model(engine) -> None:
    """Rank 0's parameters to every rank as the engine starts (DeepSpeed's own views each parameter as
    bytes, which fails for the 0-dim ones StyleGAN2 has). ZeRO-3's partitioned parameters are skipped."""
    import torch.distributed as dist
    if dist.get_world_size() == 1:
        return
    for p in engine.module.parameters():
        status = getattr(p, "ds_status", None)
        if status is None or status.name == "AVAILABLE":
            dist.broadcast(p.data.view(-1) if p.dim() == 0 else p.data, src=0)


def zero_init_param(init, param) -> None:
    """ZeRO-3's conversion of one parameter (rank 0's value to its group, then partitioned), with the
    broadcast of broadcast_model for the same reason."""
    from deepspeed import comm as dist
    init._convert_to_deepspeed_param(param)
    group = init.get_partition_dp_group(param)
    src = 0 if dist.get_world_group() == group else dist.get_global_rank(group, 0)
    dist.broadcast(param.data.view(-1) if param.dim() == 0 else param.data, src, group)
    param.partition()


@contextlib.contextmanager
def inside_engine_backward(engine):
    """Mark `engine` as running engine.backward while another engine's backward carries a loss into it: its
    hooks then open its backward (the prologue on its outputs) without closing it on their own (in
    DeepSpeed 0.19, a plain backward through an engine's outputs runs that engine's epilogue, which fails at
    stage 0 and leaves ZeRO-1's gradients unset: "NoneType" in its step), so the caller closes it once."""
    with engine._running_engine_backward_lock:
        engine._running_engine_backward_count += 1
        engine._running_engine_backward = True
    try:
        yield
    finally:
        with engine._running_engine_backward_lock:
            engine._running_engine_backward_count -= 1
            engine._running_engine_backward = engine._running_engine_backward_count > 0


HOLD = -1  # a sub-module id no module has: ZeRO-3 frees a parameter only when no sub-module still uses it


@contextlib.contextmanager
def held_whole(params: list):
    """ZeRO-3 parameters gathered on entry and kept whole (marked in use) until the exit partitions them."""
    import deepspeed
    with deepspeed.zero.GatheredParameters(params):
        for p in params:
            p.ds_active_sub_modules.add(HOLD)
        try:
            yield
        finally:
            for p in params:
                p.ds_active_sub_modules.discard(HOLD)


def load_partitions(net: nn.Module, tensors: dict) -> None:
    """ZeRO-3: every parameter's slice of the whole value into this rank's partition (DeepSpeed's layout:
    the flattened parameter, zero-padded to a multiple of the ranks, cut in equal consecutive parts),
    buffers as they are. Mismatched names or shapes raise RuntimeError as load_state_dict does."""
    import torch.distributed as dist
    params = dict(net.named_parameters())
    buffers = set(net.state_dict()) - set(params)  # the persistent ones
    missing = sorted((set(params) | buffers) - set(tensors))
    unexpected = sorted(set(tensors) - set(params) - buffers)
    if missing or unexpected:
        raise RuntimeError(f"missing keys {missing[:3]}, unexpected keys {unexpected[:3]}")
    for name, p in params.items():
        if tuple(tensors[name].shape) != tuple(p.ds_shape):
            raise RuntimeError(f"size mismatch for {name}: {tuple(tensors[name].shape)} vs {tuple(p.ds_shape)}")
    net.load_state_dict({k: v for k, v in tensors.items() if k in buffers}, strict=False)
    with torch.no_grad():
        for name, p in params.items():
            part = p.ds_tensor
            start = dist.get_rank(group=p.ds_process_group) * part.ds_numel
            piece = tensors[name].reshape(-1)[start:start + part.ds_numel].to(part.device, part.dtype)
            part.data.zero_()
            part.data.view(-1)[:piece.numel()].copy_(piece)


PLAIN = (str, int, float, bool, type(None), torch.dtype)


def plain(x):
    """DeepSpeed optimizer state as tensors and plain values (weights_only-loadable): enums become their
    values, objects (its loss scaler) a dict of their plain attributes."""
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, PLAIN):
        return x
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if hasattr(x, "__dict__"):
        return {"__object__": type(x).__name__,
                **{k: plain(v) for k, v in vars(x).items() if isinstance(v, (*PLAIN, torch.Tensor))}}
    return None


def restore(saved, live):
    """`saved` (from plain) put back into the shape of the live state dict: objects get their saved
    attributes back, enums stay the live ones."""
    if isinstance(live, enum.Enum):
        return live
    if isinstance(saved, dict) and "__object__" in saved and hasattr(live, "__dict__"):
        for k, v in saved.items():
            if k != "__object__" and hasattr(live, k):
                setattr(live, k, v)
        return live
    if isinstance(saved, dict) and isinstance(live, dict):
        return {k: restore(v, live.get(k)) for k, v in saved.items()}
    if isinstance(saved, list) and isinstance(live, (list, tuple)) and len(saved) == len(live):
        return [restore(s, v) for s, v in zip(saved, live)]
    return saved


class DeepSpeedHandle(OptimizerSettings):
    """One network as a DeepSpeed engine (its optimizer: the ZeRO optimizer around a torch optimizer)."""

    def __init__(self, name: str, module: nn.Module, engine, plan: OptimPlan, stage: int, backend: "DeepSpeedBackend"):
        self.name, self.module, self.engine, self.plan, self.stage = name, module, engine, plan, stage
        self.opt, self.backend, self.device = engine.optimizer, backend, backend.device

    def __call__(self, *args, **kwargs):
        return self.engine(*args, **kwargs)

    @contextlib.contextmanager
    def micro_step(self, boundary: bool, joint: Sequence["DeepSpeedHandle"] = (), second_order: bool = False):
        """Every engine of the phase learns whether this micro-step ends the accumulation (then it reduces).
        A second-order phase (R1, path length) keeps its ZeRO-3 networks' parameters whole from the forward
        to the last backward: ZeRO-3 frees them after each module's first backward, which the second one
        (through the gradient's graph) needs again and does not gather."""
        with contextlib.ExitStack() as stack:
            for h in (self, *joint):
                h.engine.set_gradient_accumulation_boundary(boundary)
                if second_order and h.stage == 3:
                    stack.enter_context(held_whole(list(h.module.parameters())))
            yield

    def backward(self, loss: torch.Tensor, joint: Sequence["DeepSpeedHandle"] = ()) -> None:
        """Backpropagate into this engine and `joint` (their hooks reduce their own gradients). A loss that
        is non-finite here poisons every gradient of the phase, so the engines' overflow check skips it."""
        if joint and self._fp16():
            raise UserError(f"train.mixed_precision=fp16: the deepspeed backend gives every engine its own loss scale, so "
                            f"a phase that trains {', '.join(h.name for h in (self, *joint))} together cannot be scaled "
                            f"once for all; use train.mixed_precision=bf16 (or backend.name=accelerate)")
        if not bool(torch.isfinite(loss.detach()).all()):
            loss = loss * float("nan")
        with contextlib.ExitStack() as stack:
            for h in joint:  # the joint engines take part in the lead's backward as if it were their own
                stack.enter_context(inside_engine_backward(h.engine))
            self.engine.backward(loss, scale_wrt_gas=False)
            for h in joint:
                h.engine._backward_epilogue()

    def step(self, joint: Sequence["DeepSpeedHandle"] = (), loss_finite: bool = True) -> tuple[dict, bool]:
        """Step every engine of the phase; their overflow checks (all-reduced) decide whether a step is
        skipped. Returns ({name: gradient norm before clipping}, applied)."""
        norms, skipped = {}, False
        for h in (self, *joint):
            hs, n = h._step()
            skipped |= hs
            norms[h.name] = torch.tensor(float("nan") if n is None else float(n))
        return norms, not self.backend.any(skipped)

    def _step(self) -> tuple[bool, float | None]:
        e = self.engine
        if self.stage == 0 and not self._fp16():  # stage 0 checks nothing itself outside fp16
            grads = [p.grad for p in self.module.parameters() if p.grad is not None]
            n = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0
            if not torch.isfinite(torch.tensor(n)):
                e.zero_grad()
                return True, n
            e.step()
            self._weight_clip()
            return False, n
        before, scale = e.skipped_steps, self._scale()
        e.step()
        skipped = e.skipped_steps != before or (scale is not None and self._scale() < scale)
        if skipped and scale is not None and self._scale() >= scale:  # ZeRO's own overflow check skipped the
            s = self._scaler()                                         # step before its GradScaler saw it
            s.update(scale * s.get_backoff_factor())
        if not skipped:
            self._weight_clip()
        n = e.get_global_grad_norm()
        if n is not None and scale is not None:  # ZeRO's norm is of the GradScaler-scaled gradients
            n = float(n) / scale
        return skipped, n

    def _fp16(self) -> bool:
        return self.backend.mixed_precision == "fp16"

    def _scaler(self):
        """The GradScaler of this engine's fp16 autocast (the ZeRO optimizer's, or stage 0's engine's)."""
        return (getattr(self.engine.optimizer, "torch_autocast_gradscaler", None)
                or getattr(self.engine, "torch_autocast_z0_gradscaler", None))

    def _scale(self) -> float | None:
        s = self._scaler()
        return float(s.get_scale()) if s is not None and s.is_enabled() else None

    def _weight_clip(self) -> None:
        c = self.plan.cfg.weight_clip
        if c is not None:  # stage 0 only (prepare refuses it with partitioned master weights)
            with torch.no_grad():
                for p in self.module.parameters():
                    p.clamp_(-c, c)

    def refresh(self) -> None:
        """After the module's weights were loaded: the ZeRO optimizer's fp32 master copy follows them."""
        if self.stage >= 1:
            self.engine.optimizer.refresh_fp32_params()

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Every rank calls it: stage 0 holds one optimizer state (the same on every rank); stages 1-3
        gather every rank's partition. The fp16 GradScaler's state rides along."""
        s = self._scaler()
        scaler = s.state_dict() if s is not None and s.is_enabled() else {}
        if self.stage == 0:
            return {"optim": self.engine.optimizer.state_dict(), "scaler": scaler}
        parts = self.backend.gather_object(plain(self.engine.optimizer.state_dict()))
        return {"optim": {"zero_stage": self.stage, "partitions": parts}, "scaler": scaler}

    def load_state_dict(self, state: dict) -> None:
        optim, b = state["optim"], self.backend
        saved_stage = optim.get("zero_stage", 0) if isinstance(optim, dict) and "partitions" in optim else 0
        if saved_stage != self.stage:
            raise UserError(f"{self.name}: its optimizer state was written under ZeRO stage {saved_stage} and this "
                            f"run uses stage {self.stage}; resume with backend.zero_stage={saved_stage} (or the "
                            f"backend that wrote it), or use a new run_dir")
        if self.stage == 0:
            self.engine.optimizer.load_state_dict(optim)
        else:
            parts = optim["partitions"]
            if len(parts) != b.world:
                raise UserError(f"{self.name}: its ZeRO optimizer state is split over {len(parts)} ranks and this run "
                                f"has {b.world}; resume on {len(parts)} processes, or use a new run_dir")
            mine = restore(parts[b.rank], self.engine.optimizer.state_dict())
            self.engine.optimizer.load_state_dict([mine] * b.world, load_optimizer_states=True,
                                                  load_from_fp32_weights=True)
        s = self._scaler()
        if s is not None and s.is_enabled() and state.get("scaler"):
            s.load_state_dict(state["scaler"])


@BACKENDS.register("deepspeed")
class DeepSpeedBackend(TorchCollectives):
    """DeepSpeed: one engine per trained network, launched by `deepspeed`, `torchrun` or
    `accelerate launch --use_deepspeed` (gloo on CPU, NCCL on GPUs)."""

    @dataclass(kw_only=True)
    class Config:
        zero_stage: int = bounded(2, ge=0, le=3)  # 0: all-reduce (DDP); 1: + optimizer states partitioned; 2: + gradients; 3: + parameters
        offload: bool = False                     # optimizer states and step on the CPU (ZeRO-Offload; stages 1-3)
        nets: dict[str, NetSettings] = field(default_factory=dict)  # per-network overrides, e.g. {D: {zero_stage: 1}}
        bucket_mb: float = bounded(50.0, gt=0, le=4096)  # reduce / all-gather bucket size in MiB
        comms_log: bool = False                   # record every collective's size (deepspeed.comm; benchmarks/scaling.py)

    def __init__(self, cfg: Config, train, seed: int):
        self.cfg = cfg
        cuda = torch.cuda.is_available()
        os.environ.setdefault("DS_ACCELERATOR", "cuda" if cuda else "cpu")  # no detection (and its warning)
        try:
            import deepspeed
        except ImportError:
            raise UserError("backend.name=deepspeed needs DeepSpeed: pip install 'hifigan[deepspeed]' (DeepSpeed "
                            f"{TESTED}), or use backend.name=accelerate") from None
        warnings.filterwarnings("ignore", message=".*all_gather_into_tensor.* is deprecated")  # DeepSpeed's call
        if not deepspeed.__version__.startswith(TESTED):
            warnings.warn(f"the deepspeed backend was tested with DeepSpeed {TESTED}.x and this is {deepspeed.__version__}; "
                          f"its workarounds reach into DeepSpeed's engine (pip install 'deepspeed=={TESTED}.*')")
        for name in ("DeepSpeed", "deepspeed"):  # its per-step OVERFLOW warnings: the trainer counts skipped steps
            logging.getLogger(name).setLevel(logging.ERROR)
        if "WORLD_SIZE" not in os.environ:  # a plain `python launch/train.py`: a group of one
            import socket
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        if not cuda:  # keep gloo's all-reduce: DeepSpeed's CPU shared-memory one is JIT-compiled (a minute on a
            import importlib  # fresh machine) and sums in an order of its own
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", auto_mpi_discovery=False,
                                   verbose=False)
        import torch.distributed as dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self.is_main = self.rank == 0
        self.mixed_precision = train.mixed_precision
        if self.mixed_precision == "fp16" and not cuda and self.is_main:
            print("warning: fp16 autocast on a CPU is slow; train.mixed_precision=bf16 is the CPU's fast format",
                  flush=True)
        self.handles: dict[int, DeepSpeedHandle] = {}
        process.setup(seed, self.rank, train.deterministic, train.threads)

    def settings(self, name: str) -> tuple[int, bool]:
        over = self.cfg.nets.get(name)
        stage = over.zero_stage if over and over.zero_stage is not None else self.cfg.zero_stage
        offload = over.offload if over and over.offload is not None else self.cfg.offload
        return stage, offload

    def ds_config(self, name: str, plan: OptimPlan) -> dict:
        """One engine's DeepSpeed config. The batch fields only satisfy DeepSpeed's arithmetic: the
        trainer owns the batch, its accumulation and the loss scaling."""
        stage, offload = self.settings(name)
        bucket = int(self.cfg.bucket_mb * 2**20 / 4)  # elements
        zero = {"stage": stage, "reduce_bucket_size": bucket, "overlap_comm": False, "contiguous_gradients": False}
        if stage in (1, 2):
            zero["allgather_bucket_size"] = bucket
        if stage == 3:
            # DeepSpeed's defaults (1e9 live parameters, reuse distance 1e9) keep a whole network gathered through
            # its forward; a bucket's worth bounds what a rank holds beyond its partition
            zero.update(stage3_prefetch_bucket_size=bucket, stage3_param_persistence_threshold=0,
                        stage3_max_live_parameters=bucket, stage3_max_reuse_distance=bucket)
        if offload and stage > 0:
            zero["offload_optimizer"] = {"device": "cpu"}
        ds = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
              "gradient_clipping": plan.cfg.grad_clip or 0.0, "zero_optimization": zero,
              "zero_allow_untested_optimizer": True, "zero_force_ds_cpu_optimizer": False,
              "steps_per_print": 2**62, "wall_clock_breakdown": False,
              "comms_logger": {"enabled": self.cfg.comms_log, "verbose": False, "prof_all": True}}
        if self.mixed_precision in AUTOCAST:
            ds["torch_autocast"] = {"enabled": True, "dtype": {"bf16": "bfloat16", "fp16": "float16"}[self.mixed_precision]}
        return ds

    def prepare(self, nets: dict[str, nn.Module], optim: dict[str, OptimPlan]) -> dict[str, DeepSpeedHandle]:
        import deepspeed
        from deepspeed.runtime.engine import DeepSpeedEngine
        from deepspeed.runtime.zero.partition_parameters import Init
        DeepSpeedEngine._broadcast_model = broadcast_model
        Init._zero_init_param = zero_init_param
        self.register_cross_replica()
        unknown = sorted(set(self.cfg.nets) - set(optim))
        if unknown:
            raise UserError(f"backend.nets.{unknown[0]}: not a network this recipe trains ({', '.join(optim)})")
        for net in nets.values():
            net.to(self.device)
            if self.mixed_precision in AUTOCAST:
                autocast_forward(net, self.device.type, AUTOCAST[self.mixed_precision])
        handles = {}
        for name, plan in optim.items():
            stage, _ = self.settings(name)
            if plan.cfg.weight_clip is not None and stage > 0:
                raise UserError(f"optim.{name}.weight_clip: clamping needs the whole master weights, which ZeRO stage "
                                f"{stage} partitions; set backend.nets.{name}.zero_stage=0 or use a gradient penalty "
                                f"(configs/mnist_wgan_gp.yaml)")
            net = nets[name]
            opt = build_optimizer(net.parameters(), plan.cfg, plan.lazy_ratio)
            engine, *_ = deepspeed.initialize(model=net, optimizer=opt, config=self.ds_config(name, plan),
                                              dist_init_required=False)
            handles[name] = self.handles[id(net)] = DeepSpeedHandle(name, net, engine, plan, stage, self)
        return handles

    def full_weights(self, net: nn.Module) -> typing.ContextManager:
        """ZeRO-3 gathers the whole parameters inside (to read them; changes are not kept)."""
        h = self.handles.get(id(net))
        if h is None or h.stage < 3:
            return contextlib.nullcontext()
        import deepspeed
        return deepspeed.zero.GatheredParameters(list(net.parameters()))

    def load_weights(self, net: nn.Module, tensors: dict) -> None:
        """Load whole weights (the same on every rank) into `net`; ZeRO-3 writes each rank's partition of them,
        and the ZeRO optimizer's fp32 master copy follows (stages 1-3)."""
        h = self.handles.get(id(net))
        if h is None or h.stage < 3:
            net.load_state_dict(tensors)
        else:
            load_partitions(net, tensors)
        if h is not None:
            h.refresh()
