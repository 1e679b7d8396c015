"""Streaming images from tar shards (the webdataset layout) with an exactly resumable position.

Shards are plain tar files; a sample is the run of consecutive members that share a key
(`00000042.jpg`, `00000042.cls`, `00000042.seg.png`). `launch/make_shards.py` writes them with a
`dataset.json` that gives the sample count of every shard; without one the counts are found by
reading the tar headers once (local files seek past the data, so this is cheap).

Where the shards come from (`data.shards`): a brace pattern (`/data/ffhq-{000000..000139}.tar`),
several patterns joined by `::`, a folder (its `dataset.json`, else its `*.tar`), a `dataset.json`,
or `pipe:` commands (`pipe:curl -s http://host/ffhq-{000000..000139}.tar`, opened with
webdataset's `gopen`) with `data.meta=dataset.json` giving their counts.

A recipe that uses `pipe:` is code: whatever follows `pipe:` runs as a shell command, with your
permissions, on every machine that trains the recipe (once per shard, per reader, per epoch).
hifigan therefore refuses `pipe:` unless the recipe or the command line also sets
`data.allow_pipe=true`; set it only for recipes you trust as you would trust a script. The commands
run only in the shard readers of a real run: never while the config is loaded or checked, never
in `--dry-run`, and never to count samples (`pipe:` shards need `data.meta`, a dataset.json that
lists them). A dataset.json names plain shard files only, so it cannot smuggle in a command.
With webdataset's secure mode (WDS_SECURE=1) `pipe:` shards are refused with a one-line error.

The stream. Epoch e orders the shards by a permutation seeded with (seed, e) and concatenates
their samples into one sequence of N. With R ranks and W loader workers there are S = R * W
readers ("slots"); slot s reads the contiguous range [s*N//S, (s+1)*N//S) of that sequence, so
every sample of the epoch is read by exactly one reader and readers differ by at most one sample.
A reader cuts its range into windows of `shuffle_buffer` samples, holds one window (still
encoded) in memory and emits it in an order permuted with (seed, e, S, s, window); the random
x-flip of each sample comes from the same generator. After the last window of epoch e the
reader goes on with its range of epoch e + 1, for ever (or for `epochs` epochs).

Position and resume. A reader's position is the number of samples of its endless sequence it
has emitted or skipped as bad. Every batch carries its reader's position; the training loop keeps
the positions of the batches it has *consumed* (not those prefetched) and stores them in the
checkpoint. A resumed reader re-reads the window holding its position (seeking to it through the
tar headers), rebuilds the same permutation and continues after the last consumed sample.

Guarantee: resumed on the same number of ranks and workers with the same seed and shards, the
stream continues exactly as the uninterrupted stream would have -- no sample is repeated or
skipped, and the shuffle buffer costs nothing (it is rebuilt, not lost). Resumed on another
number of ranks, workers, seed, shuffle buffer or shards, the readers cannot be matched, so every
reader restarts at the beginning of the least advanced old reader's epoch (a warning says so):
nothing is skipped, and at most the part of that epoch read before the checkpoint is read again.

Bad data is skipped, counted by reason (`REASONS`; the trainer logs Data/skipped/<reason>) and
reported on stderr when a reader first meets it, one line per damaged shard and reader (readers are
processes when data.workers > 0, and each reports what it reads, naming itself):
    warning: data: shard /x/ffhq-000003.tar: truncated or damaged (read 12 of 40 samples); skipped the rest
    warning: data: shard /x/ffhq-000007.tar: sample 00000042: the image does not decode; skipped it (...)
The first bad sample of a shard is named and later ones are only counted; a cut is reported even
after a bad sample of the same shard. Reasons: a truncated tar (the samples it should still hold),
a sample without an image, an image that does not decode, an image of the wrong size, a missing or
invalid class label. A skipped sample still advances the position, so skipping never shifts the
stream.

Paired sets (SPADE; dataset.json "paired": true): a sample also holds KEY.seg.png and, where the
set has instance maps, KEY.inst.png; c is then int64 [B, 1|2, H, W] maps (data/labelmaps.py), and a
bad map skips the sample like other bad data (reasons `PAIRED_REASONS`).

Non-square sets: dataset.json "aspect_ratio" (W / H, default 1) and "height"; `resolution` is
always the width W and H = W / aspect_ratio (data.aspect_ratio must match the dataset.json).

Multi-resolution: a reader can deliver `resolution` = source / 2^k for the progressive models.
JPEGs are decoded at reduced size in the DCT domain (PIL `draft`, scales 1/2 .. 1/8) and the rest
is an exact box filter (`Image.reduce`), i.e. the 2x2 average pyramid ProGAN trains on; other
formats decode at full size and are box-reduced. See docs/benchmarks.md for the measured choice.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hifigan.data import sources
from hifigan.data.labelmaps import PAIRED_REASONS, PAIRED_SKIP_TEXT, BadMap, decode_maps
from hifigan.errors import UserError

IMAGE_EXTS = tuple(e.lstrip(".") for e in sources.IMAGE_EXTS)  # what pack reads, without the dot
REASONS = ("truncated", "non_image", "undecodable", "wrong_size", "missing_label")  # + PAIRED_REASONS
FORMAT = "hifigan-shards"


# -- which shards ----------------------------------------------------------------------------------
def is_local(url: str) -> bool:
    return not (url.startswith("pipe:") or "://" in url)


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror}); data.meta must be a dataset.json") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); a damaged file? rerun launch/make_shards.py "
                        f"to rewrite it") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}); rerun launch/make_shards.py "
                        f"to rewrite it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("shards"), list):
        raise UserError(f"{path}: not a hifigan dataset.json (no format '{FORMAT}' with a shard list); "
                        f"write shards with launch/make_shards.py")
    for i, sh in enumerate(meta["shards"]):
        name = sh.get("name") if isinstance(sh, dict) else None
        count = sh.get("count") if isinstance(sh, dict) else None
        if not (isinstance(name, str) and name and name == os.path.basename(name) and "\\" not in name
                and name not in (".", "..") and not name.startswith("pipe:") and "://" not in name
                and isinstance(count, int) and not isinstance(count, bool) and count >= 0):
            raise UserError(f"{path}: shards[{i}] must be {{\"name\": a plain file name, \"count\": samples >= 0}}, "
                            f"got {_short(json.dumps(sh), 60)}; rerun launch/make_shards.py to rewrite it")
    if not meta.get("complete", True):
        print(f"warning: {path}: packing did not finish; reading the {len(meta['shards'])} shards written "
              f"so far (rerun launch/make_shards.py to complete it)", file=sys.stderr)
    return meta


def _secure_mode() -> bool:
    """webdataset's secure mode, read as webdataset reads it (WDS_SECURE=0|1)."""
    value = os.environ.get("WDS_SECURE", "0")
    try:
        return bool(int(value))
    except ValueError:
        raise UserError(f"WDS_SECURE={value!r}: webdataset reads it as an int; set WDS_SECURE=1 (secure mode) "
                        f"or 0") from None


def _check_pipes(urls: list[str], what: str, allow_pipe: bool) -> None:
    pipes = [u for u in urls if u.startswith("pipe:")]
    if not pipes:
        return
    if not allow_pipe:
        raise UserError(f"{what}: 'pipe:' runs a shell command ({_short(pipes[0], 60)!r}); set data.allow_pipe=true "
                        f"only for recipes you trust")
    if _secure_mode():
        raise UserError(f"{what}: 'pipe:' shards are refused in webdataset's secure mode (WDS_SECURE=1); unset "
                        f"WDS_SECURE to allow them, or give local shard files")


def _expand(spec: str) -> list[str]:
    from webdataset.shardlists import expand_urls
    return [u for u in expand_urls(spec) if u]


class ShardSet:
    """The ordered list of shards, their sample counts and the dataset.json (if any)."""

    def __init__(self, urls: list[str], counts: list[int], meta: dict | None):
        self.urls, self.counts, self.meta = urls, [int(c) for c in counts], meta
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    @property
    def total(self) -> int:
        return int(self.offsets[-1])

    @property
    def resolution(self):
        return None if self.meta is None else self.meta.get("resolution")

    @property
    def channels(self):
        return None if self.meta is None else self.meta.get("channels")

    @property
    def classes(self) -> list:
        return [] if self.meta is None else list(self.meta.get("classes") or [])

    @property
    def label_nc(self) -> int:
        """Labels of a paired set's maps (0: not paired). A paired dataset.json without the count
        (written before it was recorded) is a UserError naming the fix."""
        if self.meta is None or not self.meta.get("paired"):
            return 0
        n = self.meta.get("label_nc")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise UserError(f"data.shards: the dataset.json says the set is paired but gives no label count "
                            f"(label_nc={n!r}); repack it with launch/make_shards.py (--label-nc N)")
        return n

    @property
    def instance(self) -> bool:
        return bool(self.label_nc and self.meta.get("instance"))

    @property
    def aspect_ratio(self) -> float:
        return 1.0 if self.meta is None else float(self.meta.get("aspect_ratio", 1.0))

    @property
    def fingerprint(self) -> str:
        import hashlib
        h = hashlib.sha256()
        for u, c in zip(self.urls, self.counts):
            h.update(f"{os.path.basename(u)}:{c};".encode())
        return h.hexdigest()[:16]

    @classmethod
    def open(cls, spec, meta: str | None = None, what: str = "data.shards", allow_pipe: bool = False) -> "ShardSet":
        """The shards `spec` names; `pipe:` ones only with `allow_pipe` (module docstring: they are code)."""
        meta_path = Path(meta).expanduser() if meta else None
        _secure_mode()  # a bad WDS_SECURE value fails here in one line rather than inside webdataset
        if isinstance(spec, (list, tuple)):
            urls = [u for s in spec for u in _expand(str(s))]
        else:
            s = str(spec).strip()
            p = Path(s).expanduser()
            if not s:
                raise UserError(f"{what}: empty; give a shard pattern, a folder or a dataset.json")
            if not s.startswith("pipe:") and p.is_dir():
                if (p / "dataset.json").is_file():
                    meta_path = meta_path or p / "dataset.json"
                    urls = None
                else:
                    urls = sorted(str(x) for x in p.glob("*.tar"))
                    if not urls:
                        raise UserError(f"{what}: {p} holds no dataset.json and no .tar files; pack images "
                                        f"with launch/make_shards.py")
            elif s.endswith(".json"):
                if not p.is_file():
                    raise UserError(f"{what}: {p} does not exist; give the dataset.json that "
                                    f"launch/make_shards.py wrote, or the shard pattern")
                meta_path, urls = p, None
            else:
                urls = _expand(s)
        m = _read_meta(meta_path) if meta_path else None
        if urls is None:
            urls = [str(meta_path.parent / sh["name"]) for sh in m["shards"]]
        if not urls:
            raise UserError(f"{what}: {spec!r} matches no shards; check the pattern")
        _check_pipes(urls, what, allow_pipe)
        local = [u for u in urls if is_local(u)]
        missing = [u for u in local if not Path(u).is_file()]
        if len(missing) == len(urls):
            raise UserError(f"{what}: {spec!r} matches no shards ({missing[0]} does not exist); check the "
                            f"pattern and the brace range")
        if missing:
            raise UserError(f"{what}: {len(missing)} of {len(urls)} shards do not exist (first: {missing[0]}); "
                            f"fix the brace range or pack the missing shards")
        if m is None and local and len({str(Path(u).parent) for u in urls}) == 1:
            auto = Path(urls[0]).parent / "dataset.json"
            if auto.is_file():
                m = _read_meta(auto)
        counts = None
        if m is not None:
            by_name = {sh["name"]: int(sh["count"]) for sh in m["shards"]}
            if all(os.path.basename(u) in by_name for u in urls):
                counts = [by_name[os.path.basename(u)] for u in urls]
            elif meta_path is not None:
                raise UserError(f"{what}: shard {next(os.path.basename(u) for u in urls if os.path.basename(u) not in by_name)}"
                                f" is not listed in {meta_path}; give the matching dataset.json")
            else:
                m = None
        if counts is None and any(u.startswith("pipe:") for u in urls):
            raise UserError("data.meta: 'pipe:' shards need the dataset.json that lists them (hifigan does not run "
                            "the commands just to count samples); set data.meta=PATH/dataset.json")
        if counts is None:
            print(f"counting samples in {len(urls)} shards (no dataset.json lists them)", file=sys.stderr)
            counts = [count_samples(u) for u in urls]
        if sum(counts) == 0:
            raise UserError(f"{what}: the {len(urls)} shards hold no samples; pack images with "
                            f"launch/make_shards.py")
        return cls(urls, counts, m)


# -- reading one shard -----------------------------------------------------------------------------
def split_key(name: str) -> tuple[str, str]:
    """webdataset's convention: the key is everything before the first dot of the file name."""
    folder, base = os.path.split(name)
    prefix, dot, ext = base.partition(".")
    return os.path.join(folder, prefix), ext.lower()


class Truncated:
    """Marker: the shard ended (or broke) before this sample; `whole` samples came before the break
    and `why` says what broke (empty for a plain cut)."""

    def __init__(self, whole: int = 0, why: str = ""):
        self.whole, self.why = whole, why


def _open(url: str):
    if is_local(url):
        f = open(url, "rb")
        try:
            return f, tarfile.open(fileobj=f, mode="r:")
        except BaseException:
            f.close()
            raise
    from webdataset import gopen
    try:
        f = gopen(url)
    except ValueError as e:  # webdataset's secure mode (WDS_SECURE=1) refuses pipe: and URL rewriting
        raise UserError(f"data.shards: webdataset refused to open {_short(url)} ({_first_line(e)}); unset "
                        f"WDS_SECURE or give local shard files") from None
    return f, tarfile.open(fileobj=f, mode="r|")


def _open_error(url: str, e: Exception) -> str:
    status = re.search(r"exit (-?\d+)", str(e)) if url.startswith("pipe:") else None
    if status:  # webdataset's message holds the whole Popen call
        return f"the command exited with status {status.group(1)}"
    return getattr(e, "strerror", None) or _first_line(e)


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:120] if lines else type(e).__name__


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def iter_samples(url: str, skip: int = 0):
    """Yield (key, {ext: bytes}) for the samples of one shard after the first `skip`; a broken or
    truncated shard ends with a Truncated marker. Local files seek past skipped members' data."""
    try:
        f, tf = _open(url)
    except (OSError, tarfile.TarError) as e:
        yield Truncated(0, f"cannot open: {_open_error(url, e)}")
        return
    try:
        key, files, index = None, {}, -1
        while True:
            try:
                m = tf.next()
            except (tarfile.TarError, OSError, EOFError, ValueError) as e:
                yield Truncated(max(index, 0), _first_line(e))
                return
            if m is None:
                if is_local(url) and not _ends_cleanly(f, tf.offset):
                    # the sample in progress may have lost members: it counts as truncated
                    yield Truncated(max(index, 0))
                    return
                break
            if not m.isfile():
                continue
            k, ext = split_key(m.name)
            if k != key:
                if key is not None and index >= skip:
                    yield key, files
                key, files, index = k, {}, index + 1
            if index >= skip:
                try:
                    data = tf.extractfile(m).read()
                except (tarfile.TarError, OSError, EOFError, ValueError) as e:
                    yield Truncated(index, _first_line(e))
                    return
                if len(data) != m.size:
                    yield Truncated(index)
                    return
                files[ext] = data
        if key is not None and index >= skip:
            yield key, files
    finally:
        _close(tf, f)


def _close(tf, f) -> None:
    """Close a shard; a pipe: command that exits non-zero after we stopped reading (SIGPIPE) or after
    the last sample is no reason to fail: what was read was whole."""
    for close in (tf.close, f.close):
        try:
            close()
        except (OSError, tarfile.TarError):
            pass


def _ends_cleanly(f, offset: int) -> bool:
    """A complete tar ends with two zero blocks; tarfile stops quietly at a cut header instead."""
    try:
        f.seek(offset)
        block = f.read(1024)
    except OSError:
        return False
    return len(block) == 1024 and not any(block)


def count_samples(url: str) -> int:
    """Samples in a shard by its tar headers; a file that is not a readable tar holds none, and says
    so once on stderr (a cut later in the file is reported by the reader that meets it)."""
    n = 0
    try:
        f, tf = _open(url)
    except (OSError, tarfile.TarError) as e:
        print(f"warning: data: shard {url}: not a readable tar ({_open_error(url, e)}); "
              f"it holds no samples", file=sys.stderr)
        return 0
    try:
        key = None
        while True:
            try:
                m = tf.next()
            except (tarfile.TarError, OSError, EOFError, ValueError):
                break
            if m is None:
                break
            if m.isfile():
                k = split_key(m.name)[0]
                n, key = n + (k != key), k
    finally:
        _close(tf, f)
    return n


# -- decoding --------------------------------------------------------------------------------------
class Skip(Exception):
    """A sample that cannot be used; `reason` is one of REASONS, `detail` says more (or None)."""

    def __init__(self, reason: str, detail=None):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def rows(width: int, aspect_ratio: float) -> int:
    """H of an image `width` wide at W / H = aspect_ratio."""
    return round(width / aspect_ratio)


def decode(files: dict, resolution: int, source_resolution: int, channels: int, num_classes: int,
           flip: bool = False, *, aspect_ratio: float = 1.0, label_nc: int = 0,
           instance: bool = False) -> tuple[np.ndarray, int | np.ndarray]:
    """One sample -> (uint8 [H, W, C] image, c); raise Skip(reason) for bad data. `resolution` and
    `source_resolution` are widths, H = W / aspect_ratio. c is the class (or -1), or with label_nc
    > 0 the maps [K, H, W] (K = 2 with instance): uint8 label ids, int32 when instance ids follow."""
    ext = next((e for e in IMAGE_EXTS if e in files), None)
    if ext is None:
        raise Skip("non_image")
    height, source_height = rows(resolution, aspect_ratio), rows(source_resolution, aspect_ratio)
    label = -1
    if label_nc:
        try:
            label = decode_maps(files, (resolution, height), (source_resolution, source_height), label_nc, instance)
        except BadMap as e:
            raise Skip(e.reason, e.detail) from None
        if flip:
            label = label[:, :, ::-1]
    elif num_classes:
        try:
            label = int(files["cls"].decode().strip())
        except (KeyError, ValueError, UnicodeDecodeError):
            raise Skip("missing_label") from None
        if not 0 <= label < num_classes:
            raise Skip("missing_label")
    mode = "L" if channels == 1 else "RGB"
    try:
        im = Image.open(io.BytesIO(files[ext]))
        if im.size != (source_resolution, source_height):
            raise Skip("wrong_size", f" ({im.width}x{im.height}, not {source_resolution}x{source_height})")
        if resolution < source_resolution and im.format == "JPEG":
            im.draft(mode, (resolution, height))  # DCT-domain downscale by up to 8 while decoding
        im = im.convert(mode)
        if im.width != resolution:
            im = im.reduce(im.width // resolution)  # exact box filter (2x2 average per octave)
    except Skip:
        raise
    except Exception:  # PIL raises many types on corrupt data (OSError, SyntaxError, struct.error, ...)
        raise Skip("undecodable") from None
    arr = np.asarray(im)
    if arr.shape[:2] != (height, resolution):
        raise Skip("wrong_size")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if flip:
        arr = arr[:, ::-1]
    return arr, label


# -- the stream ------------------------------------------------------------------------------------
def slot_range(total: int, slots: int, slot: int) -> tuple[int, int]:
    """The contiguous part [lo, hi) of an epoch's `total` samples that reader `slot` of `slots` reads."""
    return slot * total // slots, (slot + 1) * total // slots


def _slot_len(total: int, slots: int, slot: int) -> int:
    lo, hi = slot_range(total, slots, slot)
    return hi - lo


class ShardStream(torch.utils.data.IterableDataset):
    """Endless (or `epochs`-long) stream of uint8 batches for one rank; see the module docstring.

    Each yielded item is a dict: img uint8 [B, C, H, W] (a view of channels-last memory), c int64 [B] (or None), worker (logical
    reader of this rank), pos (that reader's position after the batch), skipped (the reader's
    bad-sample counts so far), busy (seconds spent producing the batch) and keys if with_keys.
    """

    def __init__(self, shards: ShardSet, *, batch_size: int, resolution: int | None = None,
                 source_resolution: int | None = None, channels: int | None = None, num_classes: int = 0,
                 rank: int = 0, world: int = 1, workers: int = 0, seed: int = 0, shuffle_buffer: int = 1000,
                 xflip: bool = False, epochs: int | None = None, positions: list[int] | None = None,
                 first_worker: int = 0, with_keys: bool = False, verbose: bool = True,
                 aspect_ratio: float | None = None, label_nc: int | None = None, instance: bool = False):
        super().__init__()
        self.shards, self.batch_size = shards, int(batch_size)
        self.source_resolution = int(source_resolution or shards.resolution or resolution or 0)
        self.resolution = int(resolution or self.source_resolution)
        if not self.source_resolution:
            raise UserError("data.resolution: unknown for shards without a dataset.json; set data.resolution")
        if self.resolution > self.source_resolution or self.source_resolution % self.resolution:
            raise UserError(f"data.resolution: {self.resolution} is not the shards' resolution "
                            f"{self.source_resolution} divided by a whole number; use "
                            f"{self.source_resolution}, {self.source_resolution // 2}, ...")
        self.aspect_ratio = float(shards.aspect_ratio if aspect_ratio is None else aspect_ratio)
        # paired sets: maps as c (None: as the dataset.json says); instance ids only where asked for
        self.label_nc = int(shards.label_nc if label_nc is None else label_nc)
        self.instance = bool(instance and self.label_nc)
        factor = self.source_resolution // self.resolution
        source_height = rows(self.source_resolution, self.aspect_ratio)
        if source_height % factor:
            raise UserError(f"data.resolution: {self.resolution} reduces the shards' {self.source_resolution}x"
                            f"{source_height} images by {factor}, which does not divide their height; use a "
                            f"smaller reduction")
        self.channels = int(channels or shards.channels or 3)
        self.num_classes = int(num_classes)
        self.rank, self.world, self.workers = rank, world, max(int(workers), 0)
        self.readers = max(self.workers, 1)
        self.slots = self.world * self.readers
        if self.slots > shards.total:
            raise UserError(f"data: {self.slots} readers ({world} ranks x {self.readers} workers) but only "
                            f"{shards.total} samples; lower data.workers")
        self.seed, self.buffer, self.xflip = int(seed), max(int(shuffle_buffer), 1), bool(xflip)
        self.epochs = epochs
        self.positions = list(positions) if positions is not None else [0] * self.readers
        if len(self.positions) != self.readers:
            raise ValueError("positions must hold one entry per worker")
        self.first_worker, self.with_keys, self.verbose = int(first_worker) % self.readers, with_keys, verbose

    def slot_range(self, slot: int) -> tuple[int, int]:
        return slot_range(self.shards.total, self.slots, slot)

    def shard_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.shards.urls))

    def _window_rng(self, epoch: int, slot: int, window: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, self.slots, slot, window])

    def _raw(self, order: np.ndarray, start: int, stop: int):
        """Samples [start, stop) of an epoch's concatenated sequence as (shard, key, files) or
        (shard, None, Truncated) for samples a broken shard no longer holds."""
        counts = np.asarray(self.shards.counts)[order]
        ends = np.cumsum(counts)
        k = int(np.searchsorted(ends, start, side="right"))
        pos = start
        while pos < stop:
            shard = int(order[k])
            first = int(ends[k] - counts[k])
            want = min(int(ends[k]), stop) - pos
            got, cut = 0, None
            if want > 0:
                for item in iter_samples(self.shards.urls[shard], skip=pos - first):
                    if isinstance(item, Truncated):
                        cut = item
                        break
                    yield shard, item[0], item[1]
                    got += 1
                    if got == want:
                        break
            if got < want:  # the shard ended early without saying why: a cut after its last whole sample
                cut = cut or Truncated(pos - first + got)
            for _ in range(want - got):
                yield shard, None, cut
            pos += want
            k += 1

    def slot_samples(self, slot: int, position: int):
        """Endless (pos_after, shard, key, files, flip) for one slot, starting at `position`."""
        lo, hi = self.slot_range(slot)
        n = hi - lo
        epoch, p = divmod(int(position), n)
        while self.epochs is None or epoch < self.epochs:
            order = self.shard_order(epoch)
            w0 = p // self.buffer
            raw = self._raw(order, lo + w0 * self.buffer, hi)
            for w in range(w0, math.ceil(n / self.buffer)):
                size = min(self.buffer, n - w * self.buffer)
                items = [next(raw) for _ in range(size)]
                rng = self._window_rng(epoch, slot, w)
                perm = rng.permutation(size) if self.buffer > 1 else np.arange(size)
                flips = rng.random(size) < 0.5
                for t in range(p - w * self.buffer if w == w0 else 0, size):
                    j = perm[t]
                    yield (epoch * n + w * self.buffer + t + 1, *items[j], bool(flips[j]) and self.xflip)
            epoch, p = epoch + 1, 0

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is not None:
            torch.set_num_threads(1)
            # Ctrl-C and `kill -- -PGID` reach a whole process group: the training process checkpoints
            # and then shuts its readers down, so they leave the group (they still exit by themselves
            # if the training process dies, and the DataLoader can still terminate them).
            os.setpgrp()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        logical = ((info.id if info is not None else 0) + self.first_worker) % self.readers
        slot = self.rank * self.readers + logical
        skipped, reported = Counter(), set()
        imgs, labels, keys = [], [], []
        t0 = time.perf_counter()
        pos, run = self.positions[logical], 0
        for pos, shard, key, files, flip in self.slot_samples(slot, self.positions[logical]):
            try:
                if isinstance(files, Truncated):
                    raise Skip("truncated", files)
                arr, label = decode(files, self.resolution, self.source_resolution, self.channels,
                                    self.num_classes, flip, aspect_ratio=self.aspect_ratio,
                                    label_nc=self.label_nc, instance=self.instance)
            except Skip as s:
                skipped[s.reason] += 1
                self._report(reported, slot, shard, key, s)
                run += 1
                if run >= self.shards.total:  # a whole dataset's worth in a row: nothing here is usable
                    what = ", ".join(f"{v} {k}" for k, v in sorted(skipped.items()))
                    raise UserError(f"data.shards: no usable sample in {run} in a row ({what}); the shards are "
                                    f"damaged or do not match data.resolution/channels/num_classes")
                continue
            run = 0
            imgs.append(arr)
            labels.append(label)
            keys.append(key)
            if len(imgs) == self.batch_size:
                yield self._batch(imgs, labels, keys, logical, pos, skipped, t0)
                imgs, labels, keys = [], [], []
                t0 = time.perf_counter()
        if imgs:
            yield self._batch(imgs, labels, keys, logical, pos, skipped, t0)

    def _batch(self, imgs, labels, keys, logical, pos, skipped, t0: float) -> dict:
        """The batch dict; `busy` is the time since t0: reading, decoding and this assembly."""
        # One copy per image: straight into shared memory (the DataLoader passes shared tensors on
        # without copying them again), channels last; `img` is its [B, C, H, W] view.
        shape = (len(imgs), *imgs[0].shape)
        if torch.utils.data.get_worker_info() is not None:  # allocate in shared memory, no copy there
            storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
            buf = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
        else:
            buf = torch.empty(shape, dtype=torch.uint8)
        np.stack(imgs, out=buf.numpy())
        img = buf.permute(0, 3, 1, 2)
        if self.label_nc:  # maps [B, K, H, W], uint8 (int32 with instance ids); int64 on the device
            c = torch.from_numpy(np.ascontiguousarray(np.stack(labels)))
        else:
            c = torch.tensor(labels, dtype=torch.int64) if self.num_classes else None
        out = {"img": img, "c": c,
               "worker": logical, "pos": int(pos), "skipped": dict(skipped), "busy": time.perf_counter() - t0}
        if self.with_keys:
            out["keys"] = list(keys)
        return out

    def _report(self, reported: set, slot: int, shard: int, key, skip: "Skip") -> None:
        """One stderr line per damaged shard, when this reader first meets the damage: the first bad
        sample, and the truncation if the shard is also cut (the rest is only counted)."""
        what = "truncated" if skip.reason == "truncated" else "sample"
        if not self.verbose or (shard, what) in reported or (what == "sample" and (shard, "truncated") in reported):
            return
        reported.add((shard, what))
        if skip.reason == "truncated":
            cut = skip.detail
            why = f": {cut.why}" if cut.why else ""
            text = (f"truncated or damaged{why} (read {cut.whole} of {self.shards.counts[shard]} samples); "
                    f"skipped the rest")
        else:
            text = (f"sample {key}: {SKIP_TEXT[skip.reason]}{skip.detail or ''}; skipped it (later bad samples "
                    f"of this shard are only counted)")
        who = ""
        if self.slots > 1:  # every reader reports what it meets itself: say which one this is
            who = f" [rank {self.rank}, reader {slot - self.rank * self.readers} of {self.readers}]"
        print(f"warning: data: shard {self.shards.urls[shard]}: {text}{who}", file=sys.stderr, flush=True)


SKIP_TEXT = {  # what a Skip reason means, for the stderr report
    "non_image": "no image member (.jpg/.png/.webp)",
    "undecodable": "the image does not decode",
    "wrong_size": "the image has the wrong size",
    "missing_label": "no valid class label (.cls)",
    **PAIRED_SKIP_TEXT,
}


def make_loader(stream: ShardStream, prefetch: int = 2, pin_memory: bool = False):
    """A DataLoader over the stream: one process per worker, batches in round-robin worker order."""
    kw = {"prefetch_factor": max(int(prefetch), 1), "persistent_workers": False} if stream.workers else {}
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=stream.workers,
                                       pin_memory=pin_memory, **kw)


class ShardFeed:
    """Feeds the training loop from shards: every rank reads its own readers' batches of
    `batch_gpu` images (uint8 travels, pinned when the device is CUDA; conversion to [-1, 1]
    happens on the device) and keeps the positions of the batches it has consumed."""

    def __init__(self, cfg, seed: int, rank: int, world: int, batch_gpu: int, img_shape, num_classes: int,
                 device, instance: bool = False):
        self.cfg, self.seed, self.rank, self.world, self.batch_gpu = cfg, seed, rank, world, batch_gpu
        self.shards = ShardSet.open(cfg.shards, cfg.meta, allow_pipe=getattr(cfg, "allow_pipe", False))
        C, H, W = img_shape
        classes = self.shards.classes
        aspect = float(getattr(cfg, "aspect_ratio", 1.0))
        if self.shards.meta is not None:
            if num_classes and len(classes) != num_classes:
                raise UserError(f"data.shards: G is conditional on {num_classes} classes but the shards have "
                                f"{len(classes)}; set G/D num_classes={len(classes)} or pack labels")
            if self.shards.channels and self.shards.channels != C:
                raise UserError(f"data.shards: images have {self.shards.channels} channels but G makes {C}; "
                                f"set G/D channels={self.shards.channels}")
            if abs(self.shards.aspect_ratio - aspect) > 1e-9:
                raise UserError(f"data.aspect_ratio={aspect:g} but the shards were packed at aspect ratio "
                                f"{self.shards.aspect_ratio:g} (W / H); set data.aspect_ratio="
                                f"{self.shards.aspect_ratio:g}")
        if (cfg.resolution, rows(cfg.resolution, aspect)) != (W, H):
            raise UserError(f"data.resolution={cfg.resolution} and aspect_ratio={aspect:g} give "
                            f"{cfg.resolution}x{rows(cfg.resolution, aspect)} (W x H) images but G makes {W}x{H}; "
                            f"make them agree")
        self.label_nc = self.shards.label_nc
        if self.label_nc and num_classes:
            raise UserError(f"data.shards: a paired set delivers label maps as c, but G is conditional on "
                            f"{num_classes} classes; set G/D num_classes=0")
        self.instance = bool(instance and self.shards.instance)  # c carries instance ids (channel 1)
        self.aspect_ratio = aspect
        self.shape, self.num_classes = (C, H, W), num_classes
        self.resolution = cfg.resolution
        self.readers = max(cfg.workers, 1)
        self.positions, self.next_worker = [0] * self.readers, 0
        self.pin = torch.device(device).type == "cuda"
        self._it = None
        self._skipped = [{} for _ in range(self.readers)]
        self._n = self._busy = self._wait = 0.0
        self._t = time.perf_counter()

    def stream(self) -> ShardStream:
        c = self.cfg
        return ShardStream(self.shards, batch_size=self.batch_gpu, resolution=self.resolution, channels=self.shape[0],
                           num_classes=self.num_classes, rank=self.rank, world=self.world, workers=c.workers,
                           seed=self.seed, shuffle_buffer=c.shuffle_buffer, xflip=c.xflip,
                           positions=self.positions, first_worker=self.next_worker, verbose=True,
                           aspect_ratio=self.aspect_ratio, label_nc=self.label_nc, instance=self.instance)

    def configure(self, resolution: int, batch_gpu: int) -> None:
        """Read at `resolution` (the shards' resolution / 2^k) in batches of `batch_gpu`: the readers
        restart from the consumed positions, so nothing is skipped or read twice (progressive growing)."""
        if (resolution, batch_gpu) != (self.resolution, self.batch_gpu):
            self.resolution, self.batch_gpu = resolution, batch_gpu
            self.close()

    def begin(self, nimg: int, count: int) -> None:
        pass

    def next(self, chunk: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._it is None:
            self._it = iter(make_loader(self.stream(), self.cfg.prefetch, self.pin))
        t = time.perf_counter()
        try:
            b = next(self._it)
        except UserError as e:  # raised in a reader process: keep only its own one-line message
            lines = [ln for ln in str(e).splitlines() if "UserError: " in ln]
            raise UserError(lines[-1].split("UserError: ", 1)[1] if lines else str(e)) from None
        self._wait += time.perf_counter() - t
        w = b["worker"]
        self.positions[w], self.next_worker = b["pos"], (w + 1) % self.readers
        self._skipped[w] = b["skipped"]
        self._busy += b["busy"]
        self._n += len(b["img"])
        img = b["img"].to(device, non_blocking=True)
        img = img.to(torch.float32, memory_format=torch.contiguous_format).div_(127.5).sub_(1.0)
        c = None if b["c"] is None else b["c"].to(device, non_blocking=True)
        if c is not None and self.label_nc:
            c = c.long()  # [n, 1|2, H, W]: travels as uint8 / int32
        return img, c

    def state_dict(self) -> dict:
        return {"positions": list(self.positions), "next_worker": self.next_worker, "readers": self.readers,
                "world": self.world, "seed": self.seed, "shuffle_buffer": self.cfg.shuffle_buffer,
                "fingerprint": self.shards.fingerprint, "total": self.shards.total}

    def load_state_dict(self, states: list, world: int) -> None:
        """Restore this rank's readers from the per-rank states of a checkpoint (module docstring)."""
        states = [s for s in states if s]
        if not states:
            return
        same = (len(states) == self.world == world and all(
            s["readers"] == self.readers and s["seed"] == self.seed and s["shuffle_buffer"] == self.cfg.shuffle_buffer
            and s["fingerprint"] == self.shards.fingerprint for s in states))
        if same:
            self.positions, self.next_worker = list(states[self.rank]["positions"]), states[self.rank]["next_worker"]
        else:
            epoch = min(pos // max(_slot_len(s["total"], len(states) * s["readers"], r * s["readers"] + i), 1)
                        for r, s in enumerate(states) for i, pos in enumerate(s["positions"]))
            slots = self.world * self.readers
            self.positions = [epoch * _slot_len(self.shards.total, slots, self.rank * self.readers + i)
                              for i in range(self.readers)]
            self.next_worker = 0
            if self.rank == 0:
                print(f"warning: data: the checkpoint's stream was read by other ranks, workers, seed, shuffle "
                      f"buffer or shards; every reader restarts at the beginning of epoch {epoch}, so part of "
                      f"that epoch is read again", file=sys.stderr)
        if self._it is not None:
            self.close()

    def stats(self) -> dict:
        """Per-rank figures since the last call; the trainer sums the *_sum ones over ranks."""
        now = time.perf_counter()
        out = {"Timing/data_images_per_s": self._n * self.readers / self._busy if self._busy > 0 else 0.0,
               "Timing/data_wait_fraction": self._wait / max(now - self._t, 1e-9)}
        for r in REASONS + (PAIRED_REASONS if self.label_nc else ()):
            out[f"Data/skipped/{r}"] = float(sum(s.get(r, 0) for s in self._skipped))
        self._n = self._busy = self._wait = 0.0
        self._t = now
        return out

    def close(self) -> None:
        self._it = None
