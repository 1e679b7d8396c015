"""The training loop: phases as data, one objective, EMA, statistics, checkpoints, exact resume.

A step runs the schedule's phases (see phases.py). For each phase repeat the trainer draws the
next global batch of real images (if the phase uses reals), turns on gradients for the phase's
nets only (so a G step leaves no gradient in D), runs the objective once per accumulation
micro-step on this rank's chunk, and steps the phase's optimizers. After the phases it
broadcasts batch-norm buffers from rank 0 and updates G_ema.

Exact resume: everything a step consumes is a function of checkpointed state (weights,
optimizer and scaler states, step, data position, the shared latent generator and each rank's
RNG states), and checkpoints are taken only between steps, so a run killed at any moment and
rerun continues bit for bit as if it had never stopped (on the same hardware and thread count).
"""
from __future__ import annotations

import copy
import signal
import time
from pathlib import Path

import torch

from hifigan import config as config_mod
from hifigan import sample
from hifigan.errors import UserError
from hifigan.kernels import dispatch
from hifigan.models import count_params
from hifigan.objectives import Batch
from hifigan.registry import DISCRIMINATORS, GENERATORS, OBJECTIVES
from hifigan.train import checkpoint
from hifigan.train.backend import AccelerateBackend
from hifigan.train.ema import ema_beta, ema_update
from hifigan.train.phases import build_optimizer, build_phases, lazy_ratio
from hifigan.train.progressive import fade_reals, per_resolution, stage_at
from hifigan.train.sampler import SharedRandom
from hifigan.train.stats import Collector


class NetView:
    """What an objective sees: calls go to the prepared (DDP) module, attributes come from the bare one."""
    __slots__ = ("_call", "_module")

    def __init__(self, call, module):
        self._call, self._module = call, module

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._module, name)


def build_nets(cfg) -> dict:
    """G and D initialised from the run seed alone: the same weights on every rank and world size."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        G = GENERATORS.get(cfg.G.name)(cfg.G.cfg)
        D = DISCRIMINATORS.get(cfg.D.name)(cfg.D.cfg)
    return {"G": G, "D": D}


def use_kernels(impl: str, device) -> None:
    """Make `impl` the default of every fused op, failing early (a one-line error) where it cannot run."""
    try:
        dispatch.resolve("train.kernels", impl, [torch.empty(0, device=device)])
    except dispatch.KernelUnavailable as err:
        raise UserError(f"{err}; set train.kernels=auto or reference") from None
    dispatch.set_default_impl(impl)


class Trainer:
    def __init__(self, cfg, backend=None):
        self.cfg = cfg
        t = cfg.train
        self.backend = b = backend or AccelerateBackend(t.mixed_precision, cfg.seed, t.deterministic, t.threads)
        use_kernels(t.kernels, b.device)
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.batch_size = t.batch_size
        self.batch_gpu, self.accum = config_mod.derive_batch(t, b.world)
        self.objective = OBJECTIVES.get(cfg.objective.name)(cfg.objective.cfg)
        self.nets = build_nets(cfg)
        self.stage, self.stage_index = None, None
        if cfg.progressive is not None:
            for n, net in self.nets.items():
                if not getattr(net, "progressive", False):
                    raise UserError(f"progressive: {n} ({getattr(cfg, n).name}) does not grow progressively; remove "
                                    f"the progressive section or use an architecture that grows (progan, "
                                    f"stylegan1 with progressive: true)")
        self.data = self._build_data()
        self.phases = build_phases(cfg.phases or self.objective.default_phases, list(self.nets))
        if not any(self.objective.needs_real(p.name) for p in self.phases):
            raise UserError("phases: no phase shows real images to D, so training would never advance; "
                            f"include one of {', '.join(self.objective.real_phases)}")
        self.G_ema = copy.deepcopy(self.nets["G"]).eval().requires_grad_(False).to(b.device)
        for net in self.nets.values():
            net.to(b.device)
        self.opts, self.scalers = {}, {}
        for name in sorted({n for p in self.phases for n in p.nets}):
            if name not in cfg.optim:
                raise UserError(f"optim.{name}: missing; every trained network needs optimizer settings")
            ratio = lazy_ratio(self.phases, name)
            self.opts[name] = build_optimizer(self.nets[name].parameters(), cfg.optim[name], ratio)
            self.opts[name].lazy_ratio = ratio  # progressive per-resolution learning rates keep the correction
            self.scalers[name] = b.make_scaler()
        extra = set(cfg.optim) - set(self.nets)
        if extra:
            raise UserError(f"optim.{sorted(extra)[0]}: no such network in this model ({', '.join(self.nets)})")
        self.wrapped = b.prepare(self.nets)
        self.rand = SharedRandom(cfg.seed, t.batch_size, self.batch_gpu, b.device)
        self.step, self.nimg = 0, 0
        self.total_nimg = int(round(t.total_kimg * 1000))
        self.stats = Collector()
        self._stop = False
        self._last_reals: list = []
        self.metrics = []
        if cfg.metrics:  # built and checked against G before any training (hifigan/metrics)
            from hifigan.metrics import build_metrics
            self.metrics = build_metrics(cfg.metrics, cfg.log.metric_samples, self.nets["G"])

    def _build_data(self):
        from hifigan.data import build_feed
        G, b = self.nets["G"], self.backend
        return build_feed(self.cfg.data, self.cfg.seed, b.rank, b.world, self.batch_gpu, G.img_shape,
                          G.num_classes, b.device)

    # -- progressive growing -------------------------------------------------------------------
    def apply_stage(self) -> None:
        """Set resolution, alpha, batch, learning rate and data for the stage at self.nimg (a pure
        function of nimg, so a resumed run continues in the same stage; see train/progressive.py)."""
        p, t, b = self.cfg.progressive, self.cfg.train, self.backend
        if p is None:
            return
        st = stage_at(self.nimg, p.start_resolution, self.nets["G"].img_shape[-1], p.stable_kimg, p.fade_kimg)
        for net in (self.nets["G"], self.nets["D"], self.G_ema):
            net.set_stage(st.resolution, st.alpha)
        if self.stage is None or st.resolution != self.stage.resolution:
            r = st.resolution
            self.batch_size = per_resolution(p.batch_size, r, t.batch_size)
            self.batch_gpu, self.accum = config_mod.derive_batch(
                t, b.world, self.batch_size, per_resolution(p.batch_gpu, r, None), where=f"progressive ({r}x{r})")
            self.rand.global_batch, self.rand.chunk_size = self.batch_size, self.batch_gpu
            self.data.configure(r, self.batch_gpu)
            for name, opt in self.opts.items():
                for group in opt.param_groups:
                    group["lr"] = per_resolution(p.lr, r, self.cfg.optim[name].lr) * opt.lazy_ratio
        if p.reset_optimizer and self.stage_index is not None and st.index != self.stage_index:
            for opt in self.opts.values():
                opt.state.clear()
        self.stage, self.stage_index = st, st.index

    def _reals(self, a: int, chunk: int, fresh: bool):
        """Real images for micro-step `a`: the next chunk from the data, or (for phases such as a
        lazy R1 that look at the same reals as the last D step) that chunk again."""
        if not fresh:
            if a >= len(self._last_reals):
                raise UserError("phases: a phase that reuses real images runs before any phase that draws "
                                f"them; put {', '.join(self.objective.real_phases)} first")
            return self._last_reals[a]
        img, c = self.data.next(chunk, self.backend.device)
        if self.stage is not None:
            img = fade_reals(img, self.stage.alpha)
        if a == 0:
            self._last_reals = []
        self._last_reals.append((img, c))
        return img, c

    # -- one step ------------------------------------------------------------------------------
    def run_phase(self, ph) -> None:
        b, B = self.backend, self.batch_size
        for name, net in self.nets.items():
            net.requires_grad_(name in ph.nets)
        views = {n: NetView(self.wrapped[n] if n in ph.nets else self.nets[n], self.nets[n]) for n in self.nets}
        real = self.objective.needs_real(ph.name)
        reuse = ph.name in self.objective.reuse_real_phases
        if real:
            self.data.begin(self.nimg, B)
            self.nimg += B
        self.rand.begin()
        trained = [self.wrapped[n] for n in ph.nets]
        scaler = self.scalers[ph.nets[0]]  # a phase's loss is scaled once, by its first net's scaler
        for a in range(self.accum):
            chunk = a * b.world + b.rank
            img = c = None
            if real or reuse:
                img, c = self._reals(a, chunk, fresh=real)
            batch = Batch(img=img, c=c, rand=self.rand.view(chunk), mean=b.all_mean)
            with b.no_sync(trained, enabled=a < self.accum - 1):
                losses, stats = self.objective(ph.name, views, batch)
                total = sum(losses.values())
                b.backward(total * (ph.every / self.accum), scaler)
            for k, v in losses.items():
                self.stats.add(f"Loss/{ph.name}/{k}", v)
            self.stats.add(f"Loss/{ph.name}/total", total)
            for k, v in stats.items():
                self.stats.add(f"Scores/{k}", v)
        for n in ph.nets:
            oc = self.cfg.optim[n]
            norm = b.step(self.opts[n], self.nets[n], scaler, oc.grad_clip, oc.weight_clip)
            self.stats.add(f"GradNorm/{ph.name}/{n}", norm)
        scaler.update()

    def train_step(self) -> None:
        self.apply_stage()
        for ph in self.phases:
            if self.step % ph.every == 0:
                for _ in range(ph.repeats):
                    self.run_phase(ph)
        for net in self.nets.values():
            self.backend.sync_buffers(net)
        t = self.cfg.train
        ema_update(self.G_ema, self.nets["G"], ema_beta(self.batch_size, t.ema_kimg, self.nimg, t.ema_rampup))
        self.step += 1

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> dict:
        b, cfg = self.backend, self.cfg
        resumed = self.resume()
        self.apply_stage()
        if self.nimg >= self.total_nimg:
            if b.is_main:
                print(f"{self.run_dir}: already trained to {self.nimg / 1000:.3f} kimg "
                      f"(train.total_kimg={cfg.train.total_kimg}); raise train.total_kimg to continue")
            return {"step": self.step, "kimg": self.nimg / 1000, "stopped": False}
        writer = self._open_writer(resumed)
        handlers = self._install_signals()
        bar = self._progress()
        every = {k: max(1, int(round(v * 1000))) for k, v in
                 (("log", cfg.log.every_kimg), ("image", cfg.log.image_every_kimg), ("ckpt", cfg.checkpoint.every_kimg))}
        last = {"time": time.perf_counter(), "nimg": self.nimg, "step": self.step}
        saved_step = imaged_step = measured_step = None
        metric_every = int(round(cfg.log.metrics_every_kimg * 1000))  # 0: only at the end
        try:
            if not resumed:
                self._log_images(writer)
            while self.nimg < self.total_nimg:
                before = self.nimg
                self.train_step()
                crossed = {k: before // e != self.nimg // e for k, e in every.items()}
                if crossed["log"] or self.nimg >= self.total_nimg:
                    self._log_scalars(writer, last, bar)
                if crossed["image"]:
                    self._log_images(writer)
                    imaged_step = self.step
                if self.metrics and metric_every and before // metric_every != self.nimg // metric_every:
                    self._log_metrics(writer, bar)
                    measured_step = self.step
                if crossed["ckpt"]:
                    self.save()
                    saved_step = self.step
                if bar is not None:
                    bar.update((self.nimg - before) / 1000)
                self._stop = b.any(self._stop)
                if self._stop:
                    break
            if imaged_step != self.step:
                self._log_images(writer)
            if self.metrics and measured_step != self.step and self.nimg >= self.total_nimg:
                self._log_metrics(writer, bar)
            if saved_step != self.step:
                self.save()
        finally:
            self._restore_signals(handlers)
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
            self.data.close()
        if b.is_main:
            why = "stopped by signal" if self._stop else "done"
            print(f"{why}: step {self.step}, {self.nimg / 1000:.3f} kimg; checkpoint in {checkpoint.latest(self.ckpt_root)}")
        return {"step": self.step, "kimg": self.nimg / 1000, "stopped": self._stop}

    def _install_signals(self):
        def handler(signum, frame):
            if self._stop:  # second signal: stop now
                signal.signal(signum, signal.SIG_DFL)
                raise KeyboardInterrupt
            self._stop = True
        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signals(handlers):
        for s, h in handlers.items():
            signal.signal(s, h)

    def _progress(self):
        if not (self.backend.is_main and self.cfg.log.progress):
            return None
        from tqdm import tqdm
        return tqdm(total=self.total_nimg / 1000, initial=self.nimg / 1000, unit="kimg", dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}, {rate_fmt}]{postfix}",
                    mininterval=1.0)

    # -- monitoring ----------------------------------------------------------------------------
    def _open_writer(self, resumed: bool):
        if not self.backend.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = config_mod.dump(self.cfg)
        sample.atomic_write(self.run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(text))
        writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.nimg if resumed else None)
        writer.add_text("config", "```\n" + text + "\n```", self.nimg)
        return writer

    def _log_scalars(self, writer, last: dict, bar) -> None:
        b = self.backend
        for k, v in self.data.stats().items():  # counts and capacities are per rank: log their sum
            self.stats.add(k, v * (b.world if k.startswith("Data/skipped") or k.endswith("images_per_s") else 1))
        means = self.stats.means(b.reduce_mean if b.world > 1 else None)
        now = time.perf_counter()
        dt, dn, ds = now - last["time"], self.nimg - last["nimg"], self.step - last["step"]
        last.update(time=now, nimg=self.nimg, step=self.step)
        if writer is None:
            return
        means.update({
            "Progress/kimg": self.nimg / 1000, "Progress/step": self.step,
            "Timing/images_per_s": dn / max(dt, 1e-9), "Timing/step_time_s": dt / max(ds, 1),
            "Timing/s_per_kimg": dt / max(dn / 1000, 1e-9), "Memory/peak_MiB": b.peak_memory_mib(),
        })
        for name, opt in self.opts.items():
            means[f"LR/{name}"] = opt.param_groups[0]["lr"]
        if self.stage is not None:
            means.update({"Progress/resolution": self.stage.resolution, "Progress/alpha": self.stage.alpha,
                          "Progress/batch_size": self.batch_size})
        for k, v in means.items():
            writer.add_scalar(k, v, self.nimg)
        writer.flush()
        if bar is not None:
            short = {k.split("/", 1)[1].replace("/total", ""): f"{v:.3f}" for k, v in means.items()
                     if k.startswith("Loss/") and k.endswith("/total")}
            bar.set_postfix(short, refresh=False)

    def _standing_stats(self) -> None:
        sample.standing_stats(self.G_ema, self.cfg.train.ema_bn_batches, self.batch_gpu)

    def _log_images(self, writer) -> None:
        self._standing_stats()  # every rank, so G_ema stays identical across ranks
        if writer is None:
            return
        images = sample.generate(self.G_ema, range(self.cfg.log.grid_size))
        cols = self.G_ema.num_classes or None
        grid = sample.make_grid(images, cols)
        writer.add_image("Samples/G_ema", grid, self.nimg, dataformats="HWC")
        sample.save_png(self.run_dir / "samples" / f"fakes{self.nimg // 1000:06d}.png", grid)

    def _log_metrics(self, writer, bar) -> None:
        """Evaluate `metrics` on G_ema on the main process, as Metrics/<name>. The RNG streams training
        draws from are forked around it, so a run with metrics trains exactly as one without."""
        self._standing_stats()  # every rank, so G_ema stays identical across ranks
        if writer is None:
            return
        from hifigan.metrics import evaluate
        b = self.backend
        with torch.random.fork_rng(devices=[b.device] if b.device.type == "cuda" else []):
            result = evaluate(self.metrics, self.G_ema, b.device)
        for k, v in result.scalars.items():
            writer.add_scalar(f"Metrics/{k}", v, self.nimg)
        writer.flush()
        line = ", ".join(f"{k} {v:.4g}" for k, v in result.scalars.items())
        (bar.write if bar is not None else print)(f"metrics at {self.nimg / 1000:.3f} kimg: {line}")

    # -- checkpoints ---------------------------------------------------------------------------
    def all_nets(self) -> dict:
        return {**self.nets, "G_ema": self.G_ema}

    def save(self) -> None:
        b = self.backend
        self._standing_stats()
        rng = b.gather_object(b.rng_state())
        digests = b.gather_object(checkpoint.digest(self.all_nets()))
        data_state = b.gather_object(self.data.state_dict())
        if b.is_main:
            arch = {"G": self.cfg.G.name, "D": self.cfg.D.name, "G_ema": self.cfg.G.name}
            kind = {"G": "generator", "D": "discriminator", "G_ema": "generator"}
            files = {n: (net, kind[n], arch[n]) for n, net in self.all_nets().items()}
            text = config_mod.dump(self.cfg)
            state = {
                "step": self.step, "nimg": self.nimg, "data_position": self.nimg, "world_size": b.world,
                "optim": {n: o.state_dict() for n, o in self.opts.items()},
                "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
                "rng": rng, "shared_rng": self.rand.state(), "data": data_state, "config": text, "digests": digests,
                "objective": self.objective.state_dict(), "stage_index": self.stage_index,
            }
            meta = {"config": text, "step": self.step, "kimg": self.nimg / 1000}
            checkpoint.save(self.ckpt_root, self.step, files, state, meta, self.cfg.checkpoint.keep)
            if len(set(digests)) > 1:
                print(f"warning: ranks hold different weights at step {self.step} ({digests})")
        b.barrier()

    def resume(self) -> bool:
        ckpt = checkpoint.latest(self.ckpt_root)
        if ckpt is None:
            return False
        state = checkpoint.load_state(ckpt)
        self._check_same_model(config_mod.loads(state["config"]), ckpt)
        for n, net in self.all_nets().items():
            arch = self.cfg.D.name if n == "D" else self.cfg.G.name
            checkpoint.load_net_into(net, ckpt / f"{n}.safetensors", arch)
        for n, opt in self.opts.items():
            opt.load_state_dict(state["optim"][n])
            self.scalers[n].load_state_dict(state["scalers"][n])
        self.step, self.nimg = int(state["step"]), int(state["nimg"])
        self.objective.load_state_dict(state.get("objective") or {}, self.backend.device)
        self.stage_index = state.get("stage_index")
        self.rand.set_state(state["shared_rng"])
        b = self.backend
        self.data.load_state_dict(state.get("data") or [], int(state["world_size"]))
        if len(state["rng"]) == b.world:
            b.set_rng_state(state["rng"][b.rank])
        elif b.is_main:
            print(f"warning: checkpoint written by {len(state['rng'])} ranks, resuming on {b.world}: "
                  f"per-rank random streams restart (the run continues, but not bit for bit)")
        if b.is_main:
            print(f"resuming {ckpt} at step {self.step}, {self.nimg / 1000:.3f} kimg", flush=True)
        return True

    def _check_same_model(self, saved: dict, ckpt: Path) -> None:
        now = config_mod.to_dict(self.cfg)
        for key in ("G", "D", "objective"):
            if saved.get(key) != now[key]:
                raise UserError(f"{ckpt}: this run dir was trained with a different {key} "
                                f"({saved.get(key)} vs {now[key]}); use a new run_dir or the original config")


def describe(trainer: Trainer) -> str:
    """The resolved config and one parameter-count line per network (for --dry-run)."""
    lines = [config_mod.dump(trainer.cfg).rstrip()]
    lines += [f"{name}: {count_params(net):,} parameters" for name, net in trainer.nets.items()]
    lines.append(f"batch: {trainer.cfg.train.batch_size} global = {trainer.backend.world} ranks x "
                 f"{trainer.batch_gpu} x {trainer.accum} accumulation steps")
    return "\n".join(lines)
