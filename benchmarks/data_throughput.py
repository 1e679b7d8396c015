#!/usr/bin/env python
"""Data throughput: tar shards vs loose JPEG files vs a StyleGAN-layout PNG zip, reading one set of
shards at every resolution of a progressive model, and what one CPU core of DCGAN training consumes.

    python benchmarks/data_throughput.py             # the full run of docs/benchmarks.md (~5.5 min, 2 cores)
    python benchmarks/data_throughput.py --quick     # small sets, a smoke test (~1 min)

The test set is random square crops of the colour photographs that scikit-image and scikit-learn
ship (no download), saved as loose JPEG files (quality 90, PIL's default 4:2:0 chroma) in a few
sub-folders: these are "the source JPEG bytes". Most photos are smaller than 1024 px, so the 1024^2
crops are upscaled (LANCZOS) and the script says how many. From them:
  shards   hifigan.data.pack at the same resolution: the JPEG bytes pass through unchanged;
           read with ShardStream + make_loader (hifigan.data.shards)
  loose    the JPEG files themselves, through a plain map-style Dataset and a shuffled DataLoader
  png zip  the decoded pixels as uncompressed PNGs (compress_level=0) in a ZIP_STORED archive, in
           the StyleGAN2-ADA dataset_tool layout (00000/img00000000.png), members read at random
All three deliver uint8 [B, 3, H, W] batches with the same number of worker processes and batch
size. A pass is timed whole, from creating the loader's iterator to its last batch: worker start-up
(a fork) and the ragged end of the epoch are included, alike for every format (about 10% of a
400-image pass at 1024^2); timing only the batches after a warm-up would count the batches
prefetched during it as free.

Page cache: every file here fits in RAM, which hides the I/O side of the comparison, so each pass
is run warm (files read once beforehand) and cold (every file evicted with posix_fadvise
DONTNEED first). The script checks that eviction works by timing a read of the PNG zip warm and
evicted; on a filesystem that ignores the advice (tmpfs) the cold columns are warm in disguise.

Multi-resolution (1024^2 shards read at 1024 ... 4): (a) the stream's path, JPEG DCT-domain
downscale (PIL draft) then an exact box filter (Image.reduce); (b) full decode then box filter, by
swapping shards.decode for the run (workers are forked, so they see the swap); (c) stored
pyramids, the source packed again at each resolution (pack re-encodes with LANCZOS, quality 90);
(d) two stored levels, 1024^2 and 256^2, each resolution read with (a) from the nearest level at or
above it. Pixel differences are measured against (b), the exact 2x2 average pyramid.

Training consumption: a Dmain + Gmain step of the repo's DCGAN (hifigan.models.dcgan, width 64,
3 channels, Adam, the non-saturating loss of hifigan.objectives.gan) on one thread, on uint8
batches already in memory; images/s = real images consumed per second. StyleGAN is not in the
repository yet; it is measured when it lands.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import math
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hifigan.data import shards as shards_mod
from hifigan.data.pack import pack
from hifigan.data.shards import ShardSet, ShardStream, make_loader

MB = 1e6
FORMATS = ("shards", "loose", "png zip")
LEVELS = [1024, 512, 256, 128, 64, 32, 16, 8, 4]
MID = 256  # the second stored level of option (d)


# -- the test set ----------------------------------------------------------------------------------
def load_photos() -> list[tuple[str, np.ndarray]]:
    """The colour photographs the packages ship, as uint8 [H, W, 3] (skimage's `cat` is `chelsea`)."""
    import skimage.data
    from sklearn.datasets import load_sample_images
    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]
    photos = [(n, getattr(skimage.data, n)()[..., :3]) for n in names]
    sk = load_sample_images()
    photos += [(Path(f).stem, im) for f, im in zip(sk.filenames, sk.images)]
    return photos


_PHOTOS: list = []


def _init_builder() -> None:
    _PHOTOS[:] = load_photos()


def random_crop(i: int, res: int, seed: int) -> tuple[Image.Image, bool]:
    """Image i of the set: a seeded random square of a random photo, resized to res (upscaled when
    the photo's shorter side is below res) and flipped with p = 0.5; -> (image, upscaled)."""
    rng = np.random.default_rng([seed, res, i])
    _, photo = _PHOTOS[rng.integers(len(_PHOTOS))]
    h, w = photo.shape[:2]
    short = min(h, w)
    upscaled = short < res
    side = int(rng.integers(short // 2, short + 1)) if upscaled else int(rng.integers(res, short + 1))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    im = Image.fromarray(np.ascontiguousarray(photo[y:y + side, x:x + side]))
    if side != res:
        im = im.resize((res, res), Image.LANCZOS)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return im, upscaled


def _build_one(job) -> tuple[str, bytes, bool]:
    """Writes JPEG i into its sub-folder; returns (zip member name, PNG of the decoded JPEG, upscaled)."""
    i, res, seed, jpeg_dir = job
    im, upscaled = random_crop(i, res, seed)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    path = Path(jpeg_dir) / f"part{i % 4}" / f"{i:06d}.jpg"
    path.write_bytes(buf.getvalue())
    png = io.BytesIO()
    Image.open(io.BytesIO(buf.getvalue())).convert("RGB").save(png, "PNG", compress_level=0, optimize=False)
    return f"{i // 1000:05d}/img{i:08d}.png", png.getvalue(), upscaled


def build_set(root: Path, res: int, n: int, seed: int, workers: int) -> dict:
    """Loose JPEGs, their PNG zip and their shards for one resolution; -> paths and counts."""
    t0 = time.perf_counter()
    jpeg_dir, zip_path, shard_dir = root / f"jpeg{res}", root / f"png{res}.zip", root / f"shards{res}"
    for k in range(4):
        (jpeg_dir / f"part{k}").mkdir(parents=True, exist_ok=True)
    upscaled = 0
    jobs = [(i, res, seed, str(jpeg_dir)) for i in range(n)]
    with mp.get_context("fork").Pool(max(workers, 1), _init_builder) as pool, \
            zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for name, png, up in pool.imap(_build_one, jobs, chunksize=8):
            zf.writestr(name, png)
            upscaled += up
        zf.writestr("dataset.json", '{"labels": null}')
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    meta = pack(str(jpeg_dir), str(shard_dir), resolution=res, labels="none", workers=max(workers, 1),
                progress=False)
    packed = time.perf_counter() - t0
    os.sync()  # dirty pages cannot be evicted: write everything out before any cold pass
    return {"res": res, "n": n, "jpeg": jpeg_dir, "zip": zip_path, "shards": shard_dir, "upscaled": upscaled,
            "passthrough": meta["passthrough"], "build_s": built, "pack_s": packed}


# -- the two baselines -----------------------------------------------------------------------------
def _chw(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)  # [C, H, W]


class LooseFiles(torch.utils.data.Dataset):
    """The plain baseline: one JPEG file per image, opened by path."""

    def __init__(self, root: Path):
        self.paths = sorted(str(p) for p in Path(root).rglob("*.jpg"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as im:
            return _chw(im)


class PngZip(torch.utils.data.Dataset):
    """StyleGAN2-ADA's dataset layout: PNGs in a zip, opened lazily once per worker process."""

    def __init__(self, path: Path):
        self.path = str(path)
        with zipfile.ZipFile(self.path) as zf:
            self.names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        self._zip, self._pid = None, None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._zip is None or self._pid != os.getpid():
            self._zip, self._pid = zipfile.ZipFile(self.path), os.getpid()
        with self._zip.open(self.names[i]) as f, Image.open(f) as im:
            return _chw(im)


def map_loader(ds, batch_size: int, workers: int, seed: int):
    kw = {"prefetch_factor": 2, "persistent_workers": False} if workers else {}
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       generator=torch.Generator().manual_seed(seed), **kw)


def shard_loader(shard_dir: Path, res: int, batch_size: int, workers: int, epochs: int = 1, seed: int = 0):
    stream = ShardStream(ShardSet.open(str(shard_dir)), batch_size=batch_size, resolution=res, workers=workers,
                         seed=seed, epochs=epochs)
    return make_loader(stream)


# -- timing ----------------------------------------------------------------------------------------
def timed_pass(loader, res: int) -> float:
    """images/s of one pass, from creating the iterator (worker start-up included) to the last batch.
    Timing only the batches after a warm-up would credit the batches the workers prefetched during it."""
    n, t0 = 0, time.perf_counter()
    for b in loader:
        img = b["img"] if isinstance(b, dict) else b
        if img.dtype != torch.uint8 or tuple(img.shape[1:]) != (3, res, res):
            raise RuntimeError(f"expected uint8 [B, 3, {res}, {res}] batches, got {img.dtype} {tuple(img.shape)}")
        n += len(img)
    return n / (time.perf_counter() - t0)


def files_of(path: Path) -> list[Path]:
    return [p for p in Path(path).rglob("*") if p.is_file()] if Path(path).is_dir() else [Path(path)]


def evict(path: Path) -> None:
    """Drop the files' pages from the page cache (they are clean: build_set synced them)."""
    for p in files_of(path):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def prewarm(path: Path) -> None:
    for p in files_of(path):
        with open(p, "rb") as f:
            while f.read(1 << 22):
                pass


def sizes(path: Path) -> tuple[int, int]:
    """(bytes in the files, bytes the filesystem allocates for them)."""
    st = [p.stat() for p in files_of(path)]
    return sum(s.st_size for s in st), sum(s.st_blocks * 512 for s in st)


def eviction_check(path: Path) -> tuple[float, float]:
    """Seconds to read `path` warm and right after eviction."""
    def read() -> float:
        t = time.perf_counter()
        prewarm(path)
        return time.perf_counter() - t
    prewarm(path)
    warm = read()
    evict(path)
    return warm, read()


# -- section 1: formats ----------------------------------------------------------------------------
def bench_formats(s: dict, args) -> dict:
    """{(format, cache): images/s} for one resolution: the best of --repeats passes, the formats
    taking turns so that a slow spell of the machine does not land on one format's passes."""
    res, W, B = s["res"], args.workers, args.batch_size
    makers = {"shards": (s["shards"], lambda: shard_loader(s["shards"], res, B, W, seed=args.seed)),
              "loose": (s["jpeg"], lambda: map_loader(LooseFiles(s["jpeg"]), B, W, args.seed)),
              "png zip": (s["zip"], lambda: map_loader(PngZip(s["zip"]), B, W, args.seed))}
    rates = {}
    for cache in ("warm", "cold"):
        for _ in range(args.repeats):
            for fmt, (path, make) in makers.items():
                (evict if cache == "cold" else prewarm)(path)
                rates.setdefault((fmt, cache), []).append(timed_pass(make(), res))
        for fmt in makers:
            print(f"  {res}^2 {fmt:8s} {cache}: " + " ".join(f"{r:.0f}" for r in rates[fmt, cache]) + " images/s",
                  file=sys.stderr, flush=True)
    return {k: max(v) for k, v in rates.items()}


def format_table(sets: list[dict], rates: dict) -> list[str]:
    rows = ["| res | format | images | MB | vs JPEG bytes | MB allocated | warm img/s | cold img/s "
            "| warm vs loose | cold vs loose |", "|---" * 10 + "|"]
    for s in sets:
        res, src = s["res"], sizes(s["jpeg"])[0]
        for fmt, path in zip(FORMATS, (s["shards"], s["jpeg"], s["zip"])):
            b, alloc = sizes(path)
            w, c = rates[res][fmt, "warm"], rates[res][fmt, "cold"]
            lw, lc = rates[res]["loose", "warm"], rates[res]["loose", "cold"]
            rows.append(f"| {res}² | {fmt} | {s['n']} | {b / MB:.1f} | {b / src:.3f}x | {alloc / MB:.1f} | {w:.0f} "
                        f"| {c:.0f} | {w / lw:.2f}x | {c / lc:.2f}x |")
    return rows


def per_image_costs(s: dict) -> dict:
    """Microseconds per image, warm unless noted, on one thread: where a reader's time goes (the best
    of 3 tries each; the last row is a whole 1-worker pass). The container can only change the
    reading rows: every format decodes the same JPEG bytes and hands batches over the same way."""
    res, n = s["res"], s["n"]
    paths = sorted(Path(s["jpeg"]).rglob("*.jpg"))
    urls = ShardSet.open(str(s["shards"])).urls

    def read_loose():
        for p in paths:
            with open(p, "rb") as f:
                f.read()

    def read_tar():
        return [files for url in urls for _, files in shards_mod.iter_samples(url)]

    def clock(fn, before=None, count=n) -> float:  # the best of 3: robust to a busy moment
        best = math.inf
        for _ in range(3):
            if before:
                before()
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best / count * 1e6

    out = {"loose read, warm": clock(read_loose, lambda: prewarm(s["jpeg"])),
           "loose read, cold": clock(read_loose, lambda: evict(s["jpeg"])),
           "tar read, warm": clock(read_tar, lambda: prewarm(s["shards"])),
           "tar read, cold": clock(read_tar, lambda: evict(s["shards"]))}
    every = read_tar()
    samples = every[::max(1, len(every) // 64)]
    out["decode (shards.decode)"] = clock(lambda: [shards_mod.decode(f, res, res, 3, 0) for f in samples],
                                          count=len(samples))
    arrays = [shards_mod.decode(f, res, res, 3, 0)[0] for f in samples[:32]]
    out["stack 32 into fresh shared memory (both loaders do)"] = clock(lambda: _shared_stack(arrays),
                                                                        count=len(arrays))
    prewarm(s["shards"])
    t = time.perf_counter()
    images = sum(len(b["img"]) for b in shard_loader(s["shards"], res, 32, 1))
    out["ShardStream, 1 worker: wall time"] = (time.perf_counter() - t) / images * 1e6
    return out


def _shared_stack(arrays: list) -> torch.Tensor:
    """What a DataLoader worker's default collate does: one copy into a new shared-memory tensor."""
    shape = (len(arrays), *arrays[0].shape)
    buf = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(math.prod(shape))).view(shape)
    np.stack(arrays, out=buf.numpy())
    return buf


def costs_table(costs: dict) -> list[str]:
    names = list(next(iter(costs.values())))
    out = ["| µs per image | " + " | ".join(f"{r}²" for r in costs) + " |",
           "|---" * (len(costs) + 1) + "|"]
    for k in names:
        out.append(f"| {k} | " + " | ".join(f"{c[k]:.0f}" for c in costs.values()) + " |")
    return out


# -- section 2: what training consumes -------------------------------------------------------------
def dcgan_rate(res: int, batch: int, steps: int) -> float:
    """Real images/s one thread of DCGAN training consumes (a Dmain and a Gmain step per batch)."""
    from hifigan.objectives.gan import d_logistic, g_nonsaturating
    from hifigan.registry import DISCRIMINATORS, GENERATORS
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        G = GENERATORS.build("dcgan", {"resolution": res, "channels": 3, "width": 64})
        D = DISCRIMINATORS.build("dcgan", {"resolution": res, "channels": 3, "width": 64})
        opt_G = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
        opt_D = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
        real = torch.randint(0, 256, (batch, 3, res, res), dtype=torch.uint8)

        def step():
            img = real.float().div_(127.5).sub_(1.0)  # what ShardFeed.next does on the device
            for net, train in ((G, False), (D, True)):  # Dmain
                net.requires_grad_(train)
            loss_real, loss_fake = d_logistic(D(img), D(G(torch.randn(batch, G.z_dim))))
            (loss_real + loss_fake).backward()
            opt_D.step()
            opt_D.zero_grad(set_to_none=True)
            for net, train in ((G, True), (D, False)):  # Gmain
                net.requires_grad_(train)
            g_nonsaturating(D(G(torch.randn(batch, G.z_dim)))).backward()
            opt_G.step()
            opt_G.zero_grad(set_to_none=True)

        step()  # warm-up: allocator, Adam state
        t = time.perf_counter()
        for _ in range(steps):
            step()
        return batch * steps / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)


def bench_training(s256: dict, fmt_rates: dict, args) -> list[tuple]:
    """(res, batch, DCGAN img/s, shards img/s with 1 worker, shards img/s with --workers) per resolution."""
    rows = []
    for res, batch, steps in args.train_cases:
        consume = dcgan_rate(res, batch, steps)
        prewarm(s256["shards"])
        one = timed_pass(shard_loader(s256["shards"], res, args.batch_size, 1, epochs=args.train_epochs), res)
        if res == s256["res"]:
            many = fmt_rates["shards", "warm"]  # measured with these workers already
        else:
            many = timed_pass(shard_loader(s256["shards"], res, args.batch_size, args.workers,
                                           epochs=args.train_epochs), res)
        rows.append((res, batch, consume, one, many))
        print(f"  DCGAN {res}^2: consumes {consume:.1f} images/s; shards give {one:.0f} (1 worker), "
              f"{many:.0f} ({args.workers} workers)", file=sys.stderr, flush=True)
    return rows


def training_table(rows: list[tuple], workers: int) -> list[str]:
    out = [f"| res | DCGAN batch | one core of training consumes (img/s) | shards, 1 worker (img/s) | ratio "
           f"| shards, {workers} workers (img/s) | ratio |", "|---" * 7 + "|"]
    for res, batch, consume, one, many in rows:
        out.append(f"| {res}² | {batch} | {consume:.1f} | {one:.0f} | {one / consume:.1f}x | {many:.0f} "
                   f"| {many / consume:.1f}x |")
    return out


# -- section 3: multi-resolution -------------------------------------------------------------------
def decode_full(files: dict, resolution: int, source_resolution: int, channels: int, num_classes: int,
                flip: bool = False) -> tuple[np.ndarray, int]:
    """shards.decode without the DCT-domain shortcut: decode at full size, then the box filter."""
    im = Image.open(io.BytesIO(files["jpg"])).convert("RGB")
    if im.width != resolution:
        im = im.reduce(im.width // resolution)
    arr = np.asarray(im)
    return (arr[:, ::-1] if flip else arr), -1


@contextlib.contextmanager
def full_decoding():
    saved = shards_mod.decode
    shards_mod.decode = decode_full
    try:
        yield
    finally:
        shards_mod.decode = saved


def build_pyramid(s: dict, levels: list[int], args) -> dict:
    """{res: (shard folder, seconds to pack)}; each level packed from the source JPEGs (quality 90)."""
    out = {s["res"]: (s["shards"], 0.0)}
    for r in levels:
        if r == s["res"]:
            continue
        t = time.perf_counter()
        pack(str(s["jpeg"]), str(s["root"] / f"pyramid{r}"), resolution=r, quality=90, labels="none",
             workers=max(args.workers, 1), progress=False)
        out[r] = (s["root"] / f"pyramid{r}", time.perf_counter() - t)
    os.sync()
    return out


def first_samples(shard_dir: Path, k: int) -> dict:
    """{key: files} of the first k samples in pack order (keys are pack indices in every level)."""
    ss, out = ShardSet.open(str(shard_dir)), {}
    for url in ss.urls:
        for key, files in shards_mod.iter_samples(url):
            out[os.path.basename(key)] = files
            if len(out) == k:
                return out
    return out


def two_level(pyramid: dict, r: int, mid: int) -> tuple[Path, int]:
    """(d): the nearest of the two stored levels (source and `mid`) at or above r, and its resolution."""
    top = max(pyramid)
    return (pyramid[mid][0], mid) if r <= mid else (pyramid[top][0], top)


def pixel_diffs(s: dict, pyramid: dict, levels: list[int], mid: int, k: int) -> dict:
    """{res: {"a"|"c"|"d": (max, mean) |x - b|}} over the first k images; (b) is the exact box pyramid."""
    base, src, out = first_samples(s["shards"], k), s["res"], {}
    for r in levels:
        level, (mid_dir, mid_res) = first_samples(pyramid[r][0], k), two_level(pyramid, r, mid)
        mids = first_samples(mid_dir, k)
        d = {"a": [], "c": [], "d": []}
        for key, files in base.items():
            b = decode_full(files, r, src, 3, 0)[0].astype(np.int16)
            d["a"].append(np.abs(shards_mod.decode(files, r, src, 3, 0)[0] - b))
            d["c"].append(np.abs(shards_mod.decode(level[key], r, r, 3, 0)[0] - b))
            d["d"].append(np.abs(shards_mod.decode(mids[key], r, mid_res, 3, 0)[0] - b))
        out[r] = {x: (int(np.max(v)), float(np.mean(v))) for x, v in d.items()}
    return out


def bench_multires(s: dict, pyramid: dict, levels: list[int], mid: int, args) -> dict:
    """{res: {"a"|"b"|"c"|"d": images/s}}, warm cache; a pass reads at least --multires-images."""
    out, src, B, W = {}, s["res"], args.batch_size, args.workers
    epochs = max(1, math.ceil(args.multires_images / s["n"]))
    for r in levels:
        for p, _ in pyramid.values():
            prewarm(p)
        rate = {"a": timed_pass(shard_loader(s["shards"], r, B, W, epochs=epochs), r)}
        if r == src:
            rate["b"] = rate["c"] = rate["d"] = rate["a"]  # one path: no draft, no reduce, the same files
        else:
            with full_decoding():
                rate["b"] = timed_pass(shard_loader(s["shards"], r, B, W, epochs=epochs), r)
            rate["c"] = timed_pass(shard_loader(pyramid[r][0], r, B, W, epochs=epochs), r)
            mid_dir, mid_res = two_level(pyramid, r, mid)
            rate["d"] = (rate["c"] if mid_res == r else rate["a"] if mid_res == src else
                         timed_pass(shard_loader(mid_dir, r, B, W, epochs=epochs), r))
        out[r] = rate
        print(f"  {src}^2 set read at {r}^2: " + "  ".join(f"({k}) {v:.0f}" for k, v in rate.items())
              + " images/s", file=sys.stderr, flush=True)
    return out


def multires_table(rates: dict, diffs: dict, pyramid: dict, mid: int, src_bytes: int) -> list[str]:
    top = max(pyramid)
    out = [f"| res | (a) draft + reduce | (b) full decode + reduce | (c) stored level | (d) from {top}² or {mid}² "
           "| (a)/(b) | (c)/(a) | level MB | max / mean abs diff to (b): (a) | (c) | (d) |", "|---" * 11 + "|"]
    for r, v in rates.items():
        d = diffs.get(r, {x: (0, 0.0) for x in "acd"})
        diff = " | ".join(f"{d[x][0]} / {d[x][1]:.2f}" for x in "acd")
        out.append(f"| {r}² | {v['a']:.0f} | {v['b']:.0f} | {v['c']:.0f} | {v['d']:.0f} | {v['a'] / v['b']:.2f}x "
                   f"| {v['c'] / v['a']:.2f}x | {sizes(pyramid[r][0])[0] / MB:.1f} | {diff} |")
    extra = sum(sizes(p)[0] for r, (p, _) in pyramid.items() if r != top)
    secs = sum(t for _, t in pyramid.values())
    out += ["", f"Images/s with the workers and batch size above. Stored levels below "
            f"{top}² (c): {extra / MB:.1f} MB = {extra / src_bytes:.2f}x the {top}² source JPEG bytes, packed "
            f"in {secs:.0f} s; the {mid}² level alone (d): {sizes(pyramid[mid][0])[0] / src_bytes:.2f}x."]
    return out


# -- report ----------------------------------------------------------------------------------------
def cpu_seconds() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine since boot, CPU seconds stolen by the hypervisor since
    boot, CPU seconds of this process and its reaped children)."""
    import resource
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / tick  # user nice system irq softirq
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, v[7] / tick, me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def environment(argv: list[str]) -> list[str]:
    import PIL
    import webdataset
    from PIL import features
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return [f"- date: {datetime.date.today().isoformat()}",
            f"- machine: {os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}, torch {torch.__version__}, Pillow {PIL.__version__} "
            f"(libjpeg-turbo {features.version('libjpeg_turbo')}), webdataset {webdataset.__version__}, "
            f"numpy {np.__version__}",
            f"- command: `{' '.join(['python', 'benchmarks/data_throughput.py', *argv])}`"]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def target_lines(sets: list[dict], rates: dict, train_rows: list[tuple], workers: int) -> list[str]:
    lines = []
    lo, hi = min(rates), max(rates)
    for cache in ("warm", "cold"):
        r = rates[lo]["shards", cache] / rates[lo]["loose", cache]
        lines.append(f"- {verdict(r >= 2)}: shards >= 2x loose files at {lo}², {cache} cache: {r:.2f}x")
    for cache in ("warm", "cold"):
        r = rates[hi]["shards", cache] / rates[hi]["loose", cache]
        lines.append(f"- {verdict(r >= 1)}: shards never slower than loose files at {hi}², {cache} cache: {r:.2f}x")
    for s in sets:
        r = sizes(s["shards"])[0] / sizes(s["jpeg"])[0]
        lines.append(f"- {verdict(r <= 1.1)}: shards <= 1.1x the source JPEG bytes at {s['res']}²: {r:.3f}x")
    for res, _, consume, one, many in train_rows:
        lines.append(f"- {verdict(one >= 3 * consume)}: shards >= 3x one core of DCGAN training at {res}²: "
                     f"{one / consume:.1f}x with 1 reader process ({many / consume:.1f}x with {workers})")
    return lines


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", help="where the test sets go (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep --workdir (default: delete it at the end)")
    p.add_argument("--n256", type=int, default=4000, help="images in the 256^2 set")
    p.add_argument("--n1024", type=int, default=400, help="images in the 1024^2 set")
    p.add_argument("--workers", type=int, default=2, help="loader worker processes, the same for every format")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="passes per format and cache state; the best counts")
    p.add_argument("--multires-images", type=int, default=2000, help="images per multi-resolution pass (at least)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small sets and few steps: checks that it runs")
    args = p.parse_args(argv)
    args.train_cases = [(32, 64, 6), (64, 64, 3), (256, 8, 2)]  # (res, batch, timed steps) of DCGAN
    args.train_epochs = 2
    if args.quick:
        args.n256, args.n1024, args.repeats, args.multires_images = 400, 96, 1, 200
        args.train_cases, args.train_epochs = [(32, 64, 2), (64, 32, 1), (256, 4, 1)], 1
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="hifigan-data-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args, root, argv)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("\n".join(report))
    return 0


def run(args, root: Path, argv: list[str]) -> list[str]:
    levels, t0, cpu0 = LEVELS, time.perf_counter(), cpu_seconds()
    time.sleep(1.0)
    cpu = cpu_seconds()
    if (cpu[0] - cpu0[0]) - (cpu[2] - cpu0[2]) > 0.2:
        print(f"warning: other processes are using {(cpu[0] - cpu0[0]) - (cpu[2] - cpu0[2]):.1f} CPU cores; "
              f"every figure will be low (the report says how much CPU they took)", file=sys.stderr)
    sets = []
    for res, n in ((256, args.n256), (1024, args.n1024)):
        print(f"building {n} images at {res}^2 in {root}", file=sys.stderr, flush=True)
        sets.append({**build_set(root, res, n, args.seed, args.workers), "root": root})
    warm, cold = eviction_check(sets[1]["zip"])
    print("formats", file=sys.stderr, flush=True)
    rates = {s["res"]: bench_formats(s, args) for s in sets}
    costs = {s["res"]: per_image_costs(s) for s in sets}
    print("training consumption", file=sys.stderr, flush=True)
    train_rows = bench_training(sets[0], rates[256], args)
    print("multi-resolution", file=sys.stderr, flush=True)
    pyramid = build_pyramid(sets[1], levels, args)
    diffs = pixel_diffs(sets[1], pyramid, [r for r in levels if r != 1024], MID, k=min(64, sets[1]["n"]))
    multi = bench_multires(sets[1], pyramid, levels, MID, args)

    zip_mb, cpu1, wall = sizes(sets[1]["zip"])[0] / MB, cpu_seconds(), time.perf_counter() - t0
    others, stolen = max((cpu1[0] - cpu0[0]) - (cpu1[2] - cpu0[2]), 0), cpu1[1] - cpu0[1]
    out = ["## Environment", *environment(argv),
           f"- run time {wall:.0f} s; other processes used {others:.0f} CPU-seconds meanwhile "
           f"({others / (wall * os.cpu_count()):.0%} of the machine); the hypervisor stole {stolen:.0f} s", "",
           "## Test sets"]
    for s in sets:
        out.append(f"- {s['res']}²: {s['n']} crops ({s['upscaled']} upscaled), built in {s['build_s']:.0f} s; "
                   f"packed in {s['pack_s']:.1f} s, {s['passthrough']} of {s['n']} JPEGs passed through")
    out.append(f"- page-cache eviction check: reading the {zip_mb:.0f} MB PNG zip took {warm:.2f} s warm, "
               f"{cold:.2f} s evicted ({cold / warm:.1f}x)" + ("" if cold > 1.5 * warm else
                                                             " -- eviction does NOT work here: cold = warm"))
    out += ["", f"## Formats ({args.workers} workers, batch {args.batch_size}, best of {args.repeats} passes)",
            *format_table(sets, rates), "", "## Where the time goes", *costs_table(costs), "",
            "## Training consumption (one thread) vs shard throughput",
            *training_table(train_rows, args.workers), "",
            "## Multi-resolution: the 1024² shards read at every resolution (warm cache)",
            *multires_table(multi, diffs, pyramid, MID, sizes(sets[1]["jpeg"])[0]), "", "## Targets",
            *target_lines(sets, rates, train_rows, args.workers)]
    return out


if __name__ == "__main__":
    sys.exit(main())
