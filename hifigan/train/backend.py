"""Everything the trainer may ask of the distribution layer, on Hugging Face Accelerate.

The only module that knows how the run is distributed. G and D are prepared (wrapped in DDP
when there are several processes) separately; gradients are synchronised by DDP for the nets a
phase trains; batch-norm buffers are broadcast from rank 0 after every step so that all ranks
hold identical weights; mixed precision is Accelerate's autocast, with one GradScaler per network
for fp16. Works the same under `python`, `torchrun` and `accelerate launch` (gloo on CPU).
"""
from __future__ import annotations

import contextlib
import os
import random
import resource

import numpy as np
import torch
from torch import nn


class AccelerateBackend:
    def __init__(self, mixed_precision: str = "no", seed: int = 0, deterministic: bool = True,
                 threads: int | None = None):
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed
        if threads:
            torch.set_num_threads(threads)
        import warnings
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*is deprecated")
        ddp = DistributedDataParallelKwargs(broadcast_buffers=False)  # we broadcast after the step instead
        # Without CUDA, Accelerate must be told it is a CPU run, or under torchrun it starts N
        # independent single-process runs instead of one gloo group.
        self.acc = Accelerator(mixed_precision=mixed_precision, kwargs_handlers=[ddp],
                               cpu=not torch.cuda.is_available())
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != self.world:
            raise RuntimeError(f"the launcher started {launched} processes but Accelerate formed a group of "
                               f"{self.world}; check the accelerate config / ACCELERATE_USE_CPU")
        self.device, self.is_main = self.acc.device, self.acc.is_main_process
        self.mixed_precision = mixed_precision if self.acc.native_amp else "no"
        if mixed_precision != self.mixed_precision and self.is_main:
            print(f"warning: Accelerate has no {mixed_precision} autocast on {self.device.type}; training in fp32 "
                  f"(on CPU use train.mixed_precision=bf16)", flush=True)
        set_seed(seed, device_specific=True)  # per-rank streams: seed + rank
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        else:  # let cuDNN time its algorithms per shape (the double-backward convs of R1 / path length gain most)
            torch.backends.cudnn.benchmark = True

    # -- nets and steps ------------------------------------------------------------------------
    def prepare(self, nets: dict[str, nn.Module]) -> dict[str, nn.Module]:
        """Wrap each net on its own (one DDP per net), so a phase syncs only the nets it trains.
        Progressive nets leave the layers outside the current stage unused, which DDP must be told."""
        out = {}
        for name, net in nets.items():
            if self.acc.ddp_handler is not None:
                # progressive nets and nets with heads that some phases leave unused (aux classifiers, Q)
                self.acc.ddp_handler.find_unused_parameters = bool(getattr(net, "progressive", False)
                                                                   or getattr(net, "partial", False))
            out[name] = self.acc.prepare_model(net)
        return out

    def unwrap(self, net: nn.Module) -> nn.Module:
        return self.acc.unwrap_model(net)

    def make_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.mixed_precision == "fp16")

    @contextlib.contextmanager
    def no_sync(self, nets, enabled: bool):
        """Skip DDP's gradient all-reduce (accumulation micro-steps before the last)."""
        with contextlib.ExitStack() as stack:
            if enabled and self.world > 1:
                for net in nets:
                    if hasattr(net, "no_sync"):
                        stack.enter_context(net.no_sync())
            yield

    def backward(self, loss: torch.Tensor, scaler: torch.amp.GradScaler) -> None:
        scaler.scale(loss).backward()

    def step(self, opt: torch.optim.Optimizer, net: nn.Module, scaler, clip: float | None,
             weight_clip: float | None = None) -> torch.Tensor:
        """Unscale, measure (and clip) the gradient norm, step, zero_grad(set_to_none=True); then clamp
        every parameter to [-weight_clip, weight_clip] (WGAN's Lipschitz constraint) when set."""
        scaler.unscale_(opt)
        params = [p for p in net.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip else float("inf")) if params \
            else torch.zeros((), device=self.device)
        scaler.step(opt)
        opt.zero_grad(set_to_none=True)
        if weight_clip is not None:
            clipped = net.clipped_parameters() if hasattr(net, "clipped_parameters") else net.parameters()
            with torch.no_grad():
                for p in clipped:  # a D's separate classifier is not part of the critic
                    p.clamp_(-weight_clip, weight_clip)
        return norm.detach()

    def sync_buffers(self, net: nn.Module) -> None:
        """Rank 0's buffers (batch-norm running statistics) to every rank."""
        if self.world > 1:
            import torch.distributed as dist
            for b in net.buffers():
                dist.broadcast(b.data, src=0)

    # -- collectives for bookkeeping -----------------------------------------------------------
    def reduce_mean(self, x: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return x
        return self.acc.reduce(x.to(self.device), reduction="mean").cpu()

    def all_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over ranks of a detached statistic, on the device (e.g. the path-length mean)."""
        if self.world == 1:
            return x
        import torch.distributed as dist
        y = x.detach().clone()
        dist.all_reduce(y)
        return y / self.world

    def any(self, flag: bool) -> bool:
        if self.world == 1:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.acc.reduce(t, reduction="sum").item() > 0)

    def gather_object(self, obj) -> list:
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object
        return gather_object([obj])

    def barrier(self) -> None:
        self.acc.wait_for_everyone()

    def close(self) -> None:
        """Leave the process group together: ranks tearing gloo down at interpreter exit while a
        peer is still connected can abort (SIGABRT) after a finished run."""
        import torch.distributed as dist
        if self.world > 1 and dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    # -- RNG and resources ---------------------------------------------------------------------
    def rng_state(self) -> dict:
        np_state = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
            "python": list(random.getstate()),
        }

    def set_rng_state(self, s: dict) -> None:
        torch.set_rng_state(s["torch"])
        if s["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["cuda"])
        kind, keys, pos, has_gauss, gauss = s["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
        version, internal, gauss_next = s["python"]
        random.setstate((version, tuple(internal), gauss_next))

    def peak_memory_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
