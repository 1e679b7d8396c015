"""The training loop: phases as data, one objective, EMA, statistics, checkpoints, exact resume.

A step runs the schedule's phases (see phases.py). For each phase repeat the trainer draws the
next global batch of real images (if the phase uses reals), turns on gradients for the phase's
nets only (so a G step leaves no gradient in D), runs the objective once per accumulation
micro-step on this rank's chunk, and asks the phase's network handles (train/backend.py) to
backpropagate and step. After the phases it broadcasts batch-norm buffers from rank 0 and
updates G_ema. The networks are whatever the recipe names (G, D, Q, C, E).

Exact resume: everything a step consumes is a function of checkpointed state (weights,
optimizer and scaler states, step, data position, the shared latent generator and each rank's
RNG states), and checkpoints are taken only between steps, so a run killed at any moment and
rerun continues bit for bit as if it had never stopped (on the same hardware and thread count).
"""
from __future__ import annotations

import copy
import signal
from pathlib import Path

import torch

from hifigan import config as config_mod
from hifigan import sampling
from hifigan.errors import UserError
from hifigan.kernels import dispatch
from hifigan.objectives import Batch
from hifigan.registry import NETWORKS, OBJECTIVES
from hifigan.train import faults
from hifigan.train import state as run_state
from hifigan.train.augment import build_augment
from hifigan.train.backend import build_backend
from hifigan.train.ema import ema_beta, ema_update
from hifigan.train.lock import RunLock
from hifigan.train.monitor import Monitor
from hifigan.train.phases import build_phases, optim_plans
from hifigan.train.progressive import fade_reals, per_resolution, stage_at
from hifigan.train.sampler import SharedRandom
from hifigan.train.stats import Collector


class NetView:
    """What an objective sees: calls go to the prepared (wrapped) network, attributes come from the bare one."""
    __slots__ = ("_call", "_module")

    def __init__(self, call, module):
        self._call, self._module = call, module

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._module, name)


def build_nets(cfg) -> dict:
    """Every network the recipe names (G, D, Q, C, E, in that order), initialised from the run seed
    alone: the same weights on every rank and world size. Their memory is estimated on the meta
    device first, so a recipe whose networks cannot fit fails in one line before allocating."""
    from hifigan import budget
    budget.check_training(cfg, NETWORKS)
    nets = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for name, registry in NETWORKS.items():
            spec = getattr(cfg, name)
            if spec is not None:
                nets[name] = registry.get(spec.name)(spec.cfg)
    return nets


def use_kernels(impl: str, device) -> None:
    """Make `impl` the default of every fused op, failing early (a one-line error) where it cannot run."""
    try:
        dispatch.resolve("train.kernels", impl, [torch.empty(0, device=device)])
    except dispatch.KernelUnavailable as err:
        raise UserError(f"{err}; set train.kernels=auto or reference") from None
    dispatch.set_default_impl(impl)


class Trainer:
    def __init__(self, cfg, backend=None, dry_run: bool = False):
        """Build and check everything a run needs. `dry_run`: data that is not on disk, or an objective's
        missing weights file, is a warning (`self.data_problem`, `self.files_problem`) instead of an error,
        so the networks can be inspected without them."""
        self.cfg, t = cfg, cfg.train
        self.backend = b = backend or build_backend(cfg)
        use_kernels(t.kernels, b.device)
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.batch_size = t.batch_size
        self.batch_gpu, self.accum = config_mod.derive_batch(t, b.world)
        self.objective = OBJECTIVES.get(cfg.objective.name)(cfg.objective.cfg)
        if cfg.augment.name != "none":
            if not self.objective.supports_augment:
                raise UserError(f"augment: {cfg.augment.name!r} is applied by the stylegan objective only, not by "
                                f"{cfg.objective.name!r}; remove the augment section or set augment.name=none")
            self.objective.augment = build_augment(cfg.augment, b.device)
        self.nets = build_nets(cfg)
        self.phases = build_phases(cfg.phases or self.objective.default_phases, list(self.nets))
        self.objective.check(self.nets, self.phases)
        self.files_problem = None
        try:
            self.objective.load_files()
        except UserError as e:  # a dry run inspects the networks without the weights files
            if not dry_run:
                raise
            self.files_problem = str(e)
        plans = optim_plans(self.phases, cfg.optim, self.nets)
        self.stage, self.stage_index = None, None
        if cfg.progressive is not None:
            for n, net in self.nets.items():
                if not getattr(net, "progressive", False):
                    raise UserError(f"progressive: {n} ({getattr(cfg, n).name}) does not grow progressively; remove "
                                    f"the progressive section or use an architecture that grows (progan, "
                                    f"stylegan1 with progressive: true)")
        self.data, self.data_problem = self._build_data(dry_run)
        G = self.nets["G"]
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False).to(b.device)
        self.handles = b.prepare(self.nets, plans)
        self.rand = SharedRandom(cfg.seed, t.batch_size, self.batch_gpu, b.device)
        self.step, self.nimg = 0, 0
        self.total_nimg = int(round(t.total_kimg * 1000))
        self.stats = Collector()
        self.monitor = Monitor(cfg, b, self.run_dir)
        self._stop = False
        self.nonfinite_run = self.nonfinite_total = 0  # non-finite steps: in a row now, and in the whole run
        self._last_reals: list = []
        self.fault = faults.from_env(list(self.nets))  # tests of the non-finite guard only (train/faults.py)
        self.metrics = []
        if cfg.metrics:  # built and checked against G before any training (hifigan/metrics)
            from hifigan.metrics import build_metrics
            self.metrics = build_metrics(cfg.metrics, cfg.log.metric_samples, G, cfg.metric_options)

    def _build_data(self, dry_run: bool):
        from hifigan.data import build_feed
        G, b = self.nets["G"], self.backend
        try:
            return build_feed(self.cfg.data, self.cfg.seed, b.rank, b.world, self.batch_gpu, G.img_shape,
                              G.num_classes, b.device, G=G), None
        except UserError as e:
            if not dry_run:
                raise
            return None, str(e)

    # -- progressive growing -------------------------------------------------------------------
    def apply_stage(self) -> None:
        """Set resolution, alpha, batch, learning rate and data for the stage at self.nimg (a pure
        function of nimg, so a resumed run continues in the same stage; see train/progressive.py)."""
        p, t, b = self.cfg.progressive, self.cfg.train, self.backend
        if p is None:
            return
        st = stage_at(self.nimg, p.start_resolution, self.nets["G"].img_shape[-1], p.stable_kimg, p.fade_kimg)
        for net in (*self.nets.values(), self.G_ema):
            net.set_stage(st.resolution, st.alpha)
        if self.stage is None or st.resolution != self.stage.resolution:
            r = st.resolution
            self.batch_size = per_resolution(p.batch_size, r, t.batch_size)
            self.batch_gpu, self.accum = config_mod.derive_batch(
                t, b.world, self.batch_size, per_resolution(p.batch_gpu, r, None), where=f"progressive ({r}x{r})")
            self.rand.global_batch, self.rand.chunk_size = self.batch_size, self.batch_gpu
            self.data.configure(r, self.batch_gpu)
            for name, h in self.handles.items():
                h.set_lr(per_resolution(p.lr, r, self.cfg.optim[name].lr))
        if p.reset_optimizer and self.stage_index is not None and st.index != self.stage_index:
            for h in self.handles.values():
                h.reset_optimizer()
        self.stage, self.stage_index = st, st.index

    def _reals(self, a: int, chunk: int, how: str):
        """Real images for micro-step `a`: the next chunk from the data ("draw"), or (for phases such as
        a lazy R1 that look at the same reals as the last D step) that chunk again ("reuse")."""
        if how == "reuse":
            if a >= len(self._last_reals):
                raise UserError("phases: a phase that reuses the last reals (e.g. Dreg) runs before any phase "
                                "that draws them; put Dmain first")
            return self._last_reals[a]
        img, c = self.data.next(chunk, self.backend.device)
        if self.stage is not None:
            img = fade_reals(img, self.stage.alpha)
        if a == 0:
            self._last_reals = []
        self._last_reals.append((img, c))
        return img, c

    # -- one step ------------------------------------------------------------------------------
    def run_phase(self, ph) -> bool:
        """Run one phase repeat; False when it was skipped because a loss or gradient was non-finite."""
        b = self.backend
        for name, net in self.nets.items():
            net.requires_grad_(name in ph.nets)
        views = {n: NetView(self.handles[n] if n in ph.nets else net, net) for n, net in self.nets.items()}
        reals = self.objective.reals(ph.name)
        if reals == "draw":
            self.data.begin(self.nimg, self.batch_size)
            self.nimg += self.batch_size
        self.rand.begin()
        lead, *joint = [self.handles[n] for n in ph.nets]
        with faults.injected(self.fault, self.step, b.rank, ph.nets, self.nets):
            return self._phase_steps(ph, views, reals, lead, joint)

    def _phase_steps(self, ph, views, reals, lead, joint) -> bool:
        b = self.backend
        second = self.objective.second_order(ph.name)
        logged, finite = [], torch.ones((), dtype=torch.bool, device=b.device)
        for a in range(self.accum):
            chunk = a * b.world + b.rank
            img, c = self._reals(a, chunk, reals) if reals else (None, None)
            batch = Batch(img=img, c=c, rand=self.rand.view(chunk), cross_rank_mean=b.all_mean, nimg=self.nimg)
            with lead.micro_step(boundary=a == self.accum - 1, joint=joint, second_order=second):
                losses, stats = self.objective(ph.name, views, batch)
                total = sum(losses.values())
                lead.backward(total * (ph.every / self.accum), joint=joint)
            finite &= torch.isfinite(total.detach()).all()
            logged += [(f"Loss/{ph.name}/{k}", v) for k, v in losses.items()]
            logged.append((f"Loss/{ph.name}/total", total))
            logged += [(f"Scores/{k}", v) for k, v in stats.items()]
        norms, applied = lead.step(joint=joint, loss_finite=bool(finite))
        if applied:  # a skipped phase's NaNs stay out of the logged means; it is counted instead
            for k, v in logged:
                self.stats.add(k, v)
            for n, norm in norms.items():
                self.stats.add(f"GradNorm/{ph.name}/{n}", norm)
        self.stats.add(f"Nonfinite/{ph.name}", 0.0 if applied else 1.0)
        return applied

    def train_step(self) -> None:
        """One step of every due phase; G_ema follows G only when every phase was finite. After
        train.max_nonfinite non-finite steps in a row the run stops (NonFinite) without saving."""
        self.apply_stage()
        finite = True
        for ph in self.phases:
            if self.step % ph.every == 0:
                for _ in range(ph.repeats):
                    finite &= self.run_phase(ph)
        for net in self.nets.values():
            self.backend.sync_buffers(net)
        t = self.cfg.train
        if finite:
            with self.backend.full_weights(self.nets["G"]):  # ZeRO-3: G's whole weights, gathered
                ema_update(self.G_ema, self.nets["G"], ema_beta(self.batch_size, t.ema_kimg, self.nimg, t.ema_rampup,
                                                                    t.ema_start_kimg))
            self.nonfinite_run = 0
        else:
            self.nonfinite_run += 1
            self.nonfinite_total += 1
        self.stats.add("Nonfinite/skipped_steps", 0.0 if finite else 1.0)
        if self.objective.augment is not None:  # ADA's controller: p from the sign of D(real), every few steps
            for k, v in self.objective.augment.adjust(self.step, self.nimg, self.backend.all_mean).items():
                self.stats.add(k, v)
        self.step += 1
        if self.nonfinite_run >= t.max_nonfinite:
            raise run_state.diverged(self, f"{self.nonfinite_run} steps in a row with non-finite losses or gradients "
                                           f"(train.max_nonfinite={t.max_nonfinite})")

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train to train.total_kimg, resuming from the run dir's latest checkpoint, holding its lock."""
        lock = self._lock()
        try:
            return self._run()
        finally:
            lock.release()

    def _lock(self) -> RunLock:
        """The run dir's lock (train/lock.py), taken by the main process; every rank fails alike."""
        b, lock, err = self.backend, RunLock(self.run_dir), None
        if b.is_main:
            try:
                lock.acquire()
            except UserError as e:
                err = e
        if b.any(err is not None):
            raise err or UserError(f"rank {b.rank}: the main process could not lock {self.run_dir} (see its error)")
        return lock

    def _run(self) -> dict:
        b, cfg, mon = self.backend, self.cfg, self.monitor
        resumed = self.resume()
        self.apply_stage()
        if self.nimg >= self.total_nimg:
            if b.is_main:
                print(f"{self.run_dir}: already trained to {self.nimg / 1000:.3f} kimg "
                      f"(train.total_kimg={cfg.train.total_kimg}); raise train.total_kimg to continue")
            return {"step": self.step, "kimg": self.nimg / 1000, "stopped": False}
        mon.open(self.nimg, self.step, self.total_nimg, resumed)
        handlers = self._install_signals()
        every = {k: max(1, int(round(v * 1000))) for k, v in
                 (("log", cfg.log.every_kimg), ("image", cfg.log.image_every_kimg), ("ckpt", cfg.checkpoint.every_kimg))}
        saved_step = imaged_step = measured_step = None
        metric_every = int(round(cfg.log.metrics_every_kimg * 1000))  # 0: only at the end
        try:
            if not resumed:
                self.log_images()
            while self.nimg < self.total_nimg:
                before = self.nimg
                self.train_step()
                crossed = {k: before // e != self.nimg // e for k, e in every.items()}
                if crossed["log"] or self.nimg >= self.total_nimg:
                    self.log_scalars()
                if crossed["image"]:
                    self.log_images()
                    imaged_step = self.step
                if self.metrics and metric_every and before // metric_every != self.nimg // metric_every:
                    self.log_metrics()
                    measured_step = self.step
                if crossed["ckpt"]:
                    self.save()
                    saved_step = self.step
                mon.advance((self.nimg - before) / 1000)
                self._stop = b.any(self._stop)
                if self._stop:
                    break
            if imaged_step != self.step:
                self.log_images()
            if self.metrics and measured_step != self.step and self.nimg >= self.total_nimg:
                self.log_metrics()
            if saved_step != self.step:
                self.save()
        finally:
            self._restore_signals(handlers)
            mon.close()
            self.data.close()
        if b.is_main:
            why = "stopped by signal" if self._stop else "done"
            print(f"{why}: step {self.step}, {self.nimg / 1000:.3f} kimg; checkpoint in {run_state.latest(self)}")
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

    # -- checkpoints (train/state.py) ----------------------------------------------------------
    def save(self) -> None:
        if sampling.hooks_for(self.G_ema).labelmap:  # the saved G_ema samples with statistics of its own weights
            self.standing_stats()
        run_state.save(self)

    def resume(self) -> bool:
        return run_state.resume(self)

    # -- monitoring ----------------------------------------------------------------------------
    def log_scalars(self) -> None:
        w = self.backend.world
        for k, v in self.data.stats().items():  # counts and capacities are per rank: log their sum
            self.stats.add(k, v * (w if k.startswith("Data/skipped") or k.endswith("images_per_s") else 1))
        extra = {f"LR/{name}": h.lr for name, h in self.handles.items()}
        extra["Nonfinite/total_steps"] = self.nonfinite_total
        if self.objective.augment is not None:
            extra["Augment/p"] = float(self.objective.augment.p)
        if self.stage is not None:
            extra.update({"Progress/resolution": self.stage.resolution, "Progress/alpha": self.stage.alpha,
                          "Progress/batch_size": self.batch_size})
        self.monitor.scalars(self.stats, extra, self.nimg, self.step)

    def standing_stats(self) -> None:
        """G_ema's batch-norm statistics recomputed for its weights (every rank: G_ema stays identical; a
        label-map generator's from the maps of the last real draw, over the global batch)."""
        maps = [c for _, c in self._last_reals]
        sampling.standing_stats(self.G_ema, self.cfg.train.ema_bn_batches, self.batch_gpu, maps=maps)

    def log_images(self) -> None:
        self.standing_stats()
        self.monitor.images(self.G_ema, self.nimg, self._last_reals[0] if self._last_reals else None)

    def log_metrics(self) -> None:
        self.standing_stats()
        self.monitor.metrics(self.metrics, self.G_ema, self.nimg, self.cfg.data)

