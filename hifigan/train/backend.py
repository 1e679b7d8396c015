"""Everything the trainer may ask of the distribution layer: the Backend and NetHandle protocols,
their registry (`backend.name` in a recipe), and the Accelerate backend.

The trainer never touches an optimizer, a loss scaler, DDP or a collective: it asks the backend
to `prepare` its trained networks and gets one `NetHandle` per network, which owns that network's
optimizer, loss scaler, gradient-accumulation boundary, backward, step and state. A new backend
(DeepSpeed, FSDP, ...) is a class registered here with `@BACKENDS.register(name)`; the trainer
does not change. This module and the backends are the only code that imports Accelerate or
`torch.distributed`.

A phase's loss may reach several trained networks (InfoGAN's Qmain: G, D's trunk and Q). The
phase's first handle leads: inside `lead.micro_step(boundary, joint=rest)` the objective's forward and
`lead.backward(loss, joint=rest)` run once for all of them, and `lead.step(joint=rest)` steps them all, so a backend decides how one loss
crosses its engines (here: one GradScaler scale for the whole phase, as GradScaler requires).
"""
from __future__ import annotations

import contextlib
import os
import typing
import warnings
from dataclasses import dataclass
from typing import ContextManager, Protocol, Sequence

import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.registry import BACKENDS
from hifigan.train import process
from hifigan.train.phases import OptimPlan, build_optimizer, optimizer_settings



class _AllMean(torch.autograd.Function):
    """y = mean over ranks of x; dy/dx_r = 1 / world for every rank, so the backward is the mean of
    the ranks' incoming gradients. With every rank's loss averaged (as DDP averages gradients),
    that is the exact gradient of the global objective through the shared mean."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, world: int) -> torch.Tensor:
        ctx.world = world
        return _detached_mean(x, world)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        import torch.distributed as dist
        g = grad.detach().clone().contiguous()
        dist.all_reduce(g)
        return g / ctx.world, None


def all_mean(x: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of x over `world` ranks (collective; every rank calls it, and, when x needs a gradient,
    every rank runs the backward through it)."""
    if x.requires_grad:
        return _AllMean.apply(x, world)
    return _detached_mean(x, world)


class _AllSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the incoming gradients over ranks: the gradient of the
    sum of every rank's loss, which DDP's gradient averaging then turns into the one-process
    gradient of the mean loss (cross-replica batch norm's statistics)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist
        y = x.detach().clone().contiguous()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        import torch.distributed as dist
        g = grad.detach().clone().contiguous()
        dist.all_reduce(g)
        return g


def _detached_mean(x: torch.Tensor, world: int) -> torch.Tensor:
    import torch.distributed as dist
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / world

class NetHandle(Protocol):
    """One trained network as the backend prepared it."""
    name: str
    module: nn.Module                                     # the bare network (EMA, checkpoints, metrics)
    def __call__(self, *args, **kwargs): ...              # the wrapped forward (DDP, an engine)
    def micro_step(self, boundary: bool, joint: Sequence["NetHandle"] = (), second_order: bool = False) -> ContextManager: ...
    # the forward and backward of one accumulation micro-step run inside; second_order: the loss differentiates a gradient
    def backward(self, loss: torch.Tensor, joint: Sequence["NetHandle"] = ()) -> None: ...
    def step(self, joint: Sequence["NetHandle"] = (), loss_finite: bool = True) -> tuple[dict[str, torch.Tensor], bool]: ...
    # -> ({name: grad norm}, applied): unscale, check, clip, step, zero; a phase whose loss (on any rank) or
    # gradients are non-finite is not applied (grads zeroed, no update, every rank alike)
    def apply_settings(self) -> None: ...                 # after load_state_dict: the recipe's lr, betas, ... win
    def set_lr(self, lr: float) -> None: ...              # base lr (a lazy phase's correction kept)
    @property
    def lr(self) -> float: ...
    def reset_optimizer(self) -> None: ...                # forget the moments (ProGAN's stage changes)
    def state_dict(self) -> dict: ...                     # every rank calls it (ZeRO gathers its partitions)
    def load_state_dict(self, state: dict) -> None: ...


class Backend(Protocol):
    rank: int
    world: int
    is_main: bool
    device: torch.device
    def prepare(self, nets: dict[str, nn.Module], optim: dict[str, OptimPlan]) -> dict[str, NetHandle]: ...
    def all_mean(self, x: torch.Tensor) -> torch.Tensor: ...      # the collective objectives may reach
    def reduce_mean(self, x: torch.Tensor) -> torch.Tensor: ...   # logging: a CPU tensor's mean over ranks
    def any(self, flag: bool) -> bool: ...
    def sync_buffers(self, net: nn.Module) -> None: ...
    def full_weights(self, net: nn.Module) -> ContextManager: ...  # whole params inside, to read (ZeRO-3)
    def load_weights(self, net: nn.Module, tensors: dict) -> None: ...  # whole weights in (ZeRO: partitions)
    def gather_object(self, obj) -> list: ...
    def barrier(self) -> None: ...
    def close(self) -> None: ...


class OptimizerSettings:
    """The recipe's optimizer settings on a handle's `opt` (a torch optimizer, or a ZeRO optimizer, which
    exposes its inner optimizer's param_groups and state), shared by every backend's handle."""
    opt: torch.optim.Optimizer
    plan: OptimPlan

    def apply_settings(self) -> None:
        for group in self.opt.param_groups:
            group.update(optimizer_settings(self.plan.cfg, self.plan.lazy_ratio))

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr * self.plan.lazy_ratio

    @property
    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def reset_optimizer(self) -> None:
        self.opt.state.clear()


class DDPHandle(OptimizerSettings):
    """A network under Accelerate: DDP-wrapped when there are several ranks, a torch optimizer and a
    GradScaler (enabled for fp16) of its own."""

    def __init__(self, name: str, module: nn.Module, wrapped: nn.Module, plan: OptimPlan, backend: "AccelerateBackend"):
        self.name, self.module, self.wrapped, self.plan = name, module, wrapped, plan
        self.opt = build_optimizer(module.parameters(), plan.cfg, plan.lazy_ratio)
        self.scaler = torch.amp.GradScaler(backend.device.type, enabled=backend.mixed_precision == "fp16")
        self.world, self.device, self.backend = backend.world, backend.device, backend

    def __call__(self, *args, **kwargs):
        return self.wrapped(*args, **kwargs)

    @contextlib.contextmanager
    def micro_step(self, boundary: bool, joint: Sequence["DDPHandle"] = (), second_order: bool = False):
        """The forward and backward of one accumulation micro-step run inside; before the last one
        (`boundary` False) DDP's gradient all-reduce is skipped for this net and `joint` (DDP decides
        in the forward whether the backward syncs, so the forward must be inside too)."""
        with contextlib.ExitStack() as stack:
            if not boundary and self.world > 1:
                for h in (self, *joint):
                    if hasattr(h.wrapped, "no_sync"):
                        stack.enter_context(h.wrapped.no_sync())
            yield

    def backward(self, loss: torch.Tensor, joint: Sequence["DDPHandle"] = ()) -> None:
        """Backpropagate `loss` into this net and `joint` (scaled by this handle's GradScaler under fp16)."""
        self.scaler.scale(loss).backward()

    def step(self, joint: Sequence["DDPHandle"] = (), loss_finite: bool = True) -> tuple[dict[str, torch.Tensor], bool]:
        """Unscale (by this handle's scaler, which scaled the phase's loss), measure and check the gradient
        norms, then clip, step and zero every handle of the phase, and this scaler's update. Returns
        ({name: grad norm}, applied). Not applied when the loss was non-finite on any rank, or (without
        an fp16 loss scaler, which skips such steps itself and lowers its scale) a gradient norm is
        non-finite: the gradients are zeroed and no parameter or optimizer state changes."""
        handles = (self, *joint)
        for h in handles:
            self.scaler.unscale_(h.opt)
        norms = {h.name: h._norm() for h in handles}
        bad = not loss_finite
        if not self.scaler.is_enabled():  # grads are all-reduced already: the same norms on every rank
            bad = bad or not bool(torch.isfinite(torch.stack(list(norms.values()))).all())
        bad = self.backend.any(bad)
        for h in handles:
            if not bad:
                h._apply(self.scaler)
            h.opt.zero_grad(set_to_none=True)
        self.scaler.update()
        return norms, not bad

    def _norm(self) -> torch.Tensor:
        """The (unscaled) gradient norm, clipped to grad_clip when set."""
        oc = self.plan.cfg
        params = [p for p in self.module.parameters() if p.grad is not None]
        if not params:
            return torch.zeros((), device=self.device)
        return torch.nn.utils.clip_grad_norm_(params, oc.grad_clip if oc.grad_clip else float("inf")).detach()

    def _apply(self, scaler: torch.amp.GradScaler) -> None:
        """Step; then clamp every parameter to [-weight_clip, weight_clip] (WGAN's Lipschitz constraint) when set."""
        oc = self.plan.cfg
        scaler.step(self.opt)
        if oc.weight_clip is not None:
            with torch.no_grad():
                for p in self.module.parameters():
                    p.clamp_(-oc.weight_clip, oc.weight_clip)

    def state_dict(self) -> dict:
        return {"optim": self.opt.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        optim = state["optim"]
        if isinstance(optim, dict) and "partitions" in optim:
            stage = optim.get("zero_stage")
            raise UserError(f"{self.name}: its optimizer state is split into ZeRO stage {stage} partitions by the "
                            f"deepspeed backend; resume with backend.name=deepspeed backend.zero_stage={stage}, or "
                            f"use a new run_dir")
        self.opt.load_state_dict(optim)
        self.scaler.load_state_dict(state["scaler"])


class TorchCollectives:
    """The collectives every backend offers the trainer, over torch.distributed's default group (gloo
    on CPU, NCCL on GPUs); `rank`, `world` and `device` come from the backend."""
    rank: int
    world: int
    device: torch.device

    def register_cross_replica(self) -> None:
        """Cross-replica batch norms (hifigan/nn/norms.py) of this run sum their statistics over ranks."""
        from hifigan.nn.norms import set_cross_replica_sum
        set_cross_replica_sum(_AllSum.apply if self.world > 1 else None)

    def sync_buffers(self, net: nn.Module) -> None:
        """Rank 0's buffers (batch-norm running statistics) to every rank."""
        if self.world > 1:
            import torch.distributed as dist
            for b in net.buffers():
                dist.broadcast(b.data, src=0)

    def full_weights(self, net: nn.Module) -> ContextManager:
        """Inside, `net` holds its whole parameters on every rank, to read (ZeRO-3 gathers them). Every rank
        enters it together."""
        return contextlib.nullcontext()

    def load_weights(self, net: nn.Module, tensors: dict) -> None:
        """Whole weights (the same on every rank) into `net` (ZeRO: into its partitions and master copy)."""
        net.load_state_dict(tensors)

    def all_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over ranks, on the device (Batch.cross_rank_mean). Differentiable: when x needs a
        gradient, the backward all-reduces the incoming gradient (the path-length mean's graph)."""
        if self.world == 1:
            return x
        return all_mean(x, self.world)

    def reduce_mean(self, x: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return x
        return _detached_mean(x.to(self.device), self.world).cpu()

    def any(self, flag: bool) -> bool:
        if self.world == 1:
            return bool(flag)
        import torch.distributed as dist
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def gather_object(self, obj) -> list:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        """Leave the process group together: ranks tearing gloo down at interpreter exit while a
        peer is still connected can abort (SIGABRT) after a finished run."""
        import torch.distributed as dist
        if self.world > 1 and dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


@BACKENDS.register("accelerate")
class AccelerateBackend(TorchCollectives):
    """Hugging Face Accelerate: one process, or DDP over `torchrun` / `accelerate launch` (gloo on CPU).

    G and D (and Q, C, E) are prepared separately, so a phase syncs only the nets it trains;
    batch-norm buffers are broadcast from rank 0 after every step so all ranks hold identical
    weights; mixed precision is Accelerate's autocast with one GradScaler per network for fp16.
    """

    @dataclass(kw_only=True)
    class Config:
        find_unused_parameters: typing.Optional[bool] = None  # DDP: None = for nets that grow (ProGAN) or that phases use in part

    def __init__(self, cfg: Config, train, seed: int):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs
        self.cfg = cfg
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*is deprecated")
        ddp = DistributedDataParallelKwargs(broadcast_buffers=False)  # we broadcast after the step instead
        # Without CUDA, Accelerate must be told it is a CPU run, or under torchrun it starts N
        # independent single-process runs instead of one gloo group.
        self.acc = Accelerator(mixed_precision=train.mixed_precision, kwargs_handlers=[ddp],
                               cpu=not torch.cuda.is_available())
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != self.world:
            raise RuntimeError(f"the launcher started {launched} processes but Accelerate formed a group of "
                               f"{self.world}; check the accelerate config / ACCELERATE_USE_CPU")
        self.device, self.is_main = self.acc.device, self.acc.is_main_process
        self.mixed_precision = train.mixed_precision if self.acc.native_amp else "no"
        if train.mixed_precision != self.mixed_precision and self.is_main:
            print(f"warning: Accelerate has no {train.mixed_precision} autocast on {self.device.type}; training in "
                  f"fp32 (on CPU use train.mixed_precision=bf16)", flush=True)
        process.setup(seed, self.rank, train.deterministic, train.threads)

    # -- nets ----------------------------------------------------------------------------------
    def prepare(self, nets: dict[str, nn.Module], optim: dict[str, OptimPlan]) -> dict[str, DDPHandle]:
        """One DDP per net, so a phase syncs only the nets it trains. Nets that grow or that some phase
        uses only in part (a head, the features) leave parameters unused, which DDP must be told."""
        self.register_cross_replica()
        handles = {}
        for name, net in nets.items():
            net.to(self.device)
        for name in optim:
            net = nets[name]
            if self.acc.ddp_handler is not None:
                unused = self.cfg.find_unused_parameters
                if unused is None:
                    unused = bool(getattr(net, "progressive", False) or getattr(net, "partial", False))
                self.acc.ddp_handler.find_unused_parameters = unused
            handles[name] = DDPHandle(name, net, self.acc.prepare_model(net), optim[name], self)
        return handles


def accelerate_deepspeed(cfg) -> None:
    """`accelerate launch --use_deepspeed` (or an Accelerate config with DeepSpeed) selects the deepspeed
    backend for a recipe that names accelerate, with the ZeRO stage and offload it sets."""
    from hifigan.schema import Spec
    if cfg.backend.name != "accelerate" or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() != "true":
        return
    env = {"zero_stage": int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")),
           "offload": os.environ.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none") == "cpu"}
    cfg.backend = Spec("deepspeed", BACKENDS.config("deepspeed", env, where="accelerate's DeepSpeed settings"),
                       key="name")


def build_backend(cfg) -> Backend:
    """The backend a run config names (`backend.name`), set up for this process."""
    accelerate_deepspeed(cfg)
    return BACKENDS.get(cfg.backend.name)(cfg.backend.cfg, cfg.train, cfg.seed)
