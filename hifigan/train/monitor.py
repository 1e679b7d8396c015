"""What a run shows while it trains: TensorBoard scalars, fixed-seed sample grids, quality metrics,
the resolved config, and the progress bar. Only the main process writes; every call is made on
every rank, so collectives (means of the statistics over ranks) line up.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from hifigan import config as config_mod
from hifigan import io, sampling


class _Events:
    """A TensorBoard writer whose OSErrors (raised in its writer thread, re-raised on the next call) name
    the event folder, so a full disk reads as one line about it (hifigan.errors.run_main)."""

    def __init__(self, writer, where: Path):
        self._writer, self._where = writer, str(where)

    def __getattr__(self, name):
        fn = getattr(self._writer, name)

        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except OSError as e:
                if e.filename is None:
                    e.filename = self._where
                raise
        return call


class Monitor:
    def __init__(self, cfg, backend, run_dir: Path):
        self.cfg, self.backend, self.run_dir = cfg, backend, run_dir
        self.writer = self.bar = None
        self.last = {"time": time.perf_counter(), "nimg": 0, "step": 0}

    # -- lifetime ------------------------------------------------------------------------------
    def open(self, nimg: int, step: int, total_nimg: int, resumed: bool) -> None:
        """Write config.yaml, open the TensorBoard writer (dropping events past `nimg` on resume) and the bar."""
        self.last.update(time=time.perf_counter(), nimg=nimg, step=step)
        if not self.backend.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = config_mod.dump(self.cfg)
        io.atomic_write(self.run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(text))
        self.writer = _Events(SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=nimg if resumed else None),
                              self.run_dir / "tensorboard")
        self.writer.add_text("config", "```\n" + text + "\n```", nimg)
        if self.cfg.log.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total_nimg / 1000, initial=nimg / 1000, unit="kimg", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}, "
                                       "{rate_fmt}]{postfix}", mininterval=1.0)

    def advance(self, kimg: float) -> None:
        if self.bar is not None:
            self.bar.update(kimg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def say(self, line: str) -> None:
        if self.backend.is_main:
            (self.bar.write if self.bar is not None else print)(line)

    def warn(self, line: str) -> None:
        """A warning on stderr (main process only), above the progress bar."""
        if self.backend.is_main:
            if self.bar is not None:
                self.bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr, flush=True)

    # -- what is logged ------------------------------------------------------------------------
    def scalars(self, stats, extra: dict, nimg: int, step: int) -> None:
        """Means of the collected statistics (over ranks), timing, memory and `extra` at `nimg`."""
        b = self.backend
        means = stats.means(b.reduce_mean if b.world > 1 else None)
        now = time.perf_counter()
        dt, dn, ds = now - self.last["time"], nimg - self.last["nimg"], step - self.last["step"]
        self.last.update(time=now, nimg=nimg, step=step)
        if self.writer is None:
            return
        from hifigan.train.process import peak_memory_mib
        means.update({
            "Progress/kimg": nimg / 1000, "Progress/step": step,
            "Timing/images_per_s": dn / max(dt, 1e-9), "Timing/step_time_s": dt / max(ds, 1),
            "Timing/s_per_kimg": dt / max(dn / 1000, 1e-9), "Memory/peak_MiB": peak_memory_mib(b.device),
            **extra,
        })
        for k, v in means.items():
            self.writer.add_scalar(k, v, nimg)
        self.writer.flush()
        if self.bar is not None:
            short = {k.split("/", 1)[1].replace("/total", ""): f"{v:.3f}" for k, v in means.items()
                     if k.startswith("Loss/") and k.endswith("/total")}
            self.bar.set_postfix(short, refresh=False)

    def images(self, G_ema, nimg: int, reals=None) -> None:
        """The fixed-seed grid of G_ema (one row per class for conditional models); for label-map generators
        the last drawn pairs `reals` (img, c) as map | real | synthesized triples (nothing before the first)."""
        if self.writer is None:
            return
        if sampling.hooks_for(G_ema).labelmap:
            if reals is not None:
                self._labelmap_images(G_ema, nimg, *reals)
            return
        images = sampling.generate(G_ema, range(self.cfg.log.grid_size))
        grid = sampling.make_grid(images, G_ema.num_classes or None)
        self.writer.add_image("Samples/G_ema", grid, nimg, dataformats="HWC")
        sampling.save_png(self.run_dir / "samples" / f"fakes{nimg // 1000:06d}.png", grid)

    def _labelmap_images(self, G_ema, nimg: int, img, c) -> None:
        from hifigan.sampling.labelmaps import colorize, side_by_side, synthesize
        n = min(self.cfg.log.grid_size, len(img))
        z = None
        if getattr(G_ema, "use_vae", False):  # fixed latents: the grid changes only with the weights and maps
            z = torch.randn(n, G_ema.z_dim, generator=torch.Generator().manual_seed(0))
        was = G_ema.training
        fake = synthesize(G_ema.eval(), c[:n], z)
        G_ema.train(was)
        tiles = side_by_side(colorize(c[:n], G_ema.label_nc), sampling.to_uint8(img[:n]).numpy(),
                             sampling.to_uint8(fake).numpy())
        grid = sampling.make_grid(tiles, 3 * min(n, 4))
        self.writer.add_image("Samples/labelmap_real_G_ema", grid, nimg, dataformats="HWC")
        sampling.save_png(self.run_dir / "samples" / f"fakes{nimg // 1000:06d}.png", grid)

    def metrics(self, metrics: list, G_ema, nimg: int, data_cfg=None) -> None:
        """Evaluate `metrics` on G_ema as Metrics/<name>: the protocol metrics on every rank (each
        generates its share of the samples; features are gathered), the others on the main process.
        The RNG streams training draws from are forked around it, so a run with metrics trains
        exactly as one without."""
        from hifigan.metrics import evaluate
        from hifigan.metrics.features import Dist, EvalContext
        shared = [m for m in metrics if getattr(m, "needs_context", False)]
        local = [m for m in metrics if not getattr(m, "needs_context", False)]
        if self.writer is None and not shared:
            return
        b, device = self.backend, self.backend.device
        ctx = EvalContext(data_cfg, Dist(b.rank, b.world, b.gather_object))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            result = evaluate(shared, G_ema, device, ctx)
            if self.writer is None:
                return
            rest = evaluate(local, G_ema, device)
        result.scalars.update(rest.scalars)
        for k, v in result.scalars.items():
            self.writer.add_scalar(f"Metrics/{k}", v, nimg)
        self.writer.flush()
        self.say(f"metrics at {nimg / 1000:.3f} kimg: " + ", ".join(f"{k} {v:.4g}" for k, v in result.scalars.items()))
