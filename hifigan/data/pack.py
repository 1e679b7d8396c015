"""Pack images into tar shards for webdataset streaming (the writer side of data/shards.py).

    pack("photos/", "data/photos", resolution=256)   # python launch/make_shards.py --source photos/ ...

Output: OUT/NAME-000000.tar, NAME-000001.tar, ... and OUT/dataset.json ("hifigan-shards", version 1).
A sample is consecutive members sharing an 8-digit key, its index in pack order: KEY.jpg|png|webp,
then KEY.cls (ASCII class index) in labelled sets, then KEY.seg.png (8-bit label map) in paired
sets, then KEY.inst.png (16-bit instance map) where the set has instance maps. Tar headers are
fixed (mtime 0, mode 0444, uid/gid 0, no user names): the same source and options give
byte-identical shards whatever the number of workers.

Sources (folders, zips, .npy/.npz arrays, built-in sets) and labels (labels.json, sub-folders, a
labels JSON) are listed and read by data/sources.py; its docstring has the details.

Crop and resize policy (W = resolution, H = W / aspect_ratio; aspect_ratio 1 gives R x R squares):
  center   crop the largest centred W:H box, then resize to W x H with PIL's LANCZOS filter
           (antialiased when shrinking)
  stretch  resize to W x H with LANCZOS without cropping (the aspect ratio changes)
  none     keep images that are already W x H; others are skipped ("wrong_size")
  resolution=None takes R from the shorter side of the first decodable image in pack order (square
  sets only: a non-square set needs resolution). W / aspect_ratio must be a whole number.
  EXIF orientation is applied; ICC profiles are ignored (pixels are stored as decoded). Alpha is
  composited on white. channels=None gives 1 if that first image is grayscale, else 3.

Paired sets (SPADE: labelmaps=DIR, or layout="cityscapes" | "ade20k"): the label map matched in
data/sources.py goes through the same crop and a NEAREST resize; it must be 8-bit (L, P, or RGB with
equal channels) and as large as its image ("bad_labelmap"). Instance maps (instancemaps=DIR, and the
cityscapes layout's *_instanceIds.png) likewise, 8- or 16-bit, stored as 16-bit PNG
("bad_instancemap"). A layout packs 3 channels unless channels is given. dataset.json then says
"paired": true, "label_nc" (label_nc if given, else the layout's count -- cityscapes 35, ade20k 151,
as SPADE trains them -- else the largest label id packed + 1) and "instance"; with label_nc given or
from a layout, a map holding an id >= label_nc is skipped ("label_out_of_range"). Every
dataset.json also records "aspect_ratio" and "height" (H).

Encoding: jpg at `quality` with 4:4:4 chroma (no subsampling), png, or lossless webp (WebP has no
grayscale mode: 1-channel sets are stored as RGB with equal channels). JPEG passthrough: with
encoding jpg and reencode=False, a JPEG that is already R x R, upright and of the right channel count
is stored byte for byte (no generation loss).

Order: items sorted by relative path, then permuted by numpy's Generator(seed) if shuffle, so that
shards mix classes. Bad items (empty, undecodable, unreadable, dangling_link, ...) are skipped,
counted by reason in dataset.json "skipped" and summarized in one stderr line at the end; symlinked
folders that lead back to a folder already listed (loops) and folders that cannot be listed get one
warning line each kind, before packing starts.

Failures: what the user gave that cannot be packed (a missing source, a file that is no kind of
source, a truncated zip or array, --out that is a file) is a one-line UserError before anything is
written; an OSError while writing (disk full, read-only --out) is a one-line UserError after the
shard being written is discarded (no partial shard under a final name).

Resume: each shard is written under a temporary name and renamed (hifigan.io); dataset.json is
rewritten atomically after every shard (complete=false) and at the end (complete=true). Rerunning with the
same source and options (the fingerprint) verifies the listed shards and continues after them. Its
extra key "resume" holds, per shard, the source position and counters reached when it closed.
"""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import re
import sys
import tarfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from hifigan.data.sources import _Files, _Item, _open_source
from hifigan.errors import UserError
from hifigan.io import AtomicFile, atomic_write, temporary_target
from hifigan.schema import MAX_RESOLUTION

ENCODINGS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
LAYOUT_LABEL_NC = {"cityscapes": 35, "ade20k": 151}  # SPADE's label_nc (ade20k: 150 classes + 0 = don't care)
CROPS = ("center", "stretch", "none")
_SHARD_RE = re.compile(r"^([^/]+)-\d{6}\.tar(\.tmp)?$")


class _Skip(Exception):
    """An item that cannot be packed; `reason` is its key in dataset.json "skipped"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Spec:
    resolution: int              # W
    channels: int
    crop: str
    encoding: str
    quality: int
    reencode: bool
    height: int = 0              # H; 0 = resolution (square)
    label_nc: int | None = None  # label maps with an id >= this are skipped; None = no cap

    @property
    def size(self) -> tuple[int, int]:
        return self.resolution, self.height or self.resolution


# ---------------------------------------------------------------- per-item work (runs in workers)

_SPEC = _READER = _SEG_READER = _INST_READER = None


def _init_worker(spec, reader, seg_reader, inst_reader=None) -> None:
    global _SPEC, _READER, _SEG_READER, _INST_READER
    _SPEC, _READER, _SEG_READER, _INST_READER = spec, reader, seg_reader, inst_reader


def _read(reader, ref):
    try:
        return reader.read(ref)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError):
        raise _Skip("unreadable") from None  # vanished, no permission, or a damaged / encrypted zip member


def _decode(raw) -> tuple[Image.Image, bool]:
    """(image, is an upright JPEG) from file bytes or an [H, W, C] array."""
    if isinstance(raw, np.ndarray):
        return Image.fromarray(raw[..., 0] if raw.shape[-1] == 1 else raw), False
    if not raw:
        raise _Skip("empty")
    try:  # PIL raises many types on corrupt data
        img = Image.open(io.BytesIO(raw))
        fmt = img.format
        img.load()
        upright = img.getexif().get(0x0112, 1) == 1
        if not upright:
            img = ImageOps.exif_transpose(img)
    except Exception:
        raise _Skip("undecodable") from None
    return img, fmt == "JPEG" and upright


def _is_gray(img: Image.Image) -> bool:
    return img.mode in ("1", "L", "LA", "F") or img.mode.startswith("I")


def _to_channels(img: Image.Image, channels: int) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), rgba).convert("RGB")
    elif img.mode.startswith("I") or img.mode == "F":  # 16-bit and float grayscale
        a = np.asarray(img, dtype=np.float64)
        a = a / 257.0 if a.max() > 255 else (a * 255.0 if a.max() <= 1.0 and img.mode == "F" else a)
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def _fit(img: Image.Image, spec: _Spec, resample) -> Image.Image:
    """The crop/resize policy of the module docstring."""
    W, H = spec.size
    w, h = img.size
    if spec.crop == "none":
        if (w, h) != (W, H):
            raise _Skip("wrong_size")
        return img
    if spec.crop == "center" and w * H != h * W:
        cw, ch = (round(h * W / H), h) if w * H > h * W else (w, round(w * H / W))  # the largest W:H box
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    return img if img.size == (W, H) else img.resize((W, H), resample)


def _save(img: Image.Image, encoding: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if encoding == "jpg":
        img.save(buf, "JPEG", quality=quality, subsampling=0)
    elif encoding == "png":
        img.save(buf, "PNG", compress_level=6)
    else:
        img.save(buf, "WEBP", lossless=True, quality=80, method=4)
    return buf.getvalue()


def _map_array(raw: bytes, reason: str, top: int) -> np.ndarray:
    """A label or instance map as a 2-D int array with values in [0, top]; else _Skip(reason)."""
    try:
        m = Image.open(io.BytesIO(raw))
        m.load()
        a = np.asarray(m)
    except Exception:
        raise _Skip(reason) from None
    if a.ndim == 3:  # RGB(A) is accepted only when it is gray
        if not (a[..., :3] == a[..., :1]).all():
            raise _Skip(reason)
        a = a[..., 0]
    if a.ndim != 2 or a.dtype.kind not in "uib" or a.min(initial=0) < 0 or a.max(initial=0) > top:
        raise _Skip(reason)
    return a


def _labelmap(raw: bytes) -> Image.Image:
    return Image.fromarray(_map_array(raw, "bad_labelmap", 255).astype(np.uint8))


def _instancemap(raw: bytes) -> Image.Image:
    """Mode I (int32), so that crop and NEAREST resize keep 16-bit ids."""
    return Image.fromarray(_map_array(raw, "bad_instancemap", 65535).astype(np.int32))


def _fit_maps(item: _Item, spec: _Spec, size: tuple[int, int]) -> tuple[bytes | None, bytes | None, int]:
    """(seg.png, inst.png, largest label id) of a paired item, fitted like its image of `size`."""
    if item.seg is None:
        return None, None, -1
    seg = _labelmap(_read(_SEG_READER, item.seg))
    if seg.size != size:
        raise _Skip("bad_labelmap")
    inst = None
    if item.inst is not None:
        inst = _instancemap(_read(_INST_READER, item.inst))
        if inst.size != size:
            raise _Skip("bad_instancemap")
    seg = _fit(seg, spec, Image.NEAREST)
    top = int(np.asarray(seg).max(initial=0))
    if spec.label_nc is not None and top >= spec.label_nc:
        raise _Skip("label_out_of_range")
    inst_bytes = None
    if inst is not None:
        inst_bytes = _save(Image.fromarray(np.asarray(_fit(inst, spec, Image.NEAREST)).astype(np.uint16)), "png", 0)
    return _save(seg, "png", 0), inst_bytes, top


def _work(item: _Item):
    """-> ("ok", image ext, image bytes, seg bytes | None, inst bytes | None, passed through, largest
    label id or -1) or ("skip", reason)."""
    spec = _SPEC
    try:
        raw = _read(_READER, item.ref)
        img, upright_jpeg = _decode(raw)
        seg_bytes, inst_bytes, top = _fit_maps(item, spec, img.size)
        mode = "L" if spec.channels == 1 else "RGB"
        if (spec.encoding == "jpg" and not spec.reencode and upright_jpeg and img.mode == mode
                and img.size == spec.size):
            data, passed = raw, True
        else:
            data = _save(_fit(_to_channels(img, spec.channels), spec, Image.LANCZOS), spec.encoding, spec.quality)
            passed = False
        return ("ok", spec.encoding, data, seg_bytes, inst_bytes, passed, top)
    except _Skip as s:
        return ("skip", s.reason)


def _probe(items, reader) -> Image.Image | None:
    """The first decodable image in pack order, for resolution=None / channels=None."""
    for it in items:
        try:
            return _decode(_read(reader, it.ref))[0]
        except _Skip:
            continue
    return None


# ---------------------------------------------------------------- writing shards

def _tar_bytes(content: int) -> int:
    """File size of a tar whose members take `content` bytes: end blocks, then padding to a record."""
    return -(-(content + 1024) // 10240) * 10240


def _member_bytes(size: int) -> int:
    return 512 + -(-size // 512) * 512


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _ShardWriter:
    def __init__(self, path: Path):
        self.path = path
        self._f = AtomicFile(path)
        self._tar = tarfile.open(fileobj=self._f.file, mode="w", format=tarfile.USTAR_FORMAT)
        self.count, self.content = 0, 0

    def fits(self, members, cap_bytes: float, cap_samples: int) -> bool:
        extra = sum(_member_bytes(len(d)) for _, d in members)
        return self.count == 0 or (self.count < cap_samples and _tar_bytes(self.content + extra) <= cap_bytes)

    def add(self, members) -> None:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), 0, 0o444
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            self._tar.addfile(ti, io.BytesIO(data))
            self.content += _member_bytes(len(data))
        self.count += 1

    def close(self) -> dict:
        self._tar.close()
        self._f.commit()
        return {"name": self.path.name, "count": self.count, "bytes": self.path.stat().st_size,
                "sha256": _sha256(self.path)}

    def abort(self) -> None:
        """Drop the shard being written; after a failed write (disk full) closing may fail again."""
        try:
            self._f.discard()
        except OSError:
            pass
        finally:
            self._f.tmp.unlink(missing_ok=True)


def _write_json(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=1) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# ---------------------------------------------------------------- the output folder

def _remove_shards(out: Path, names: set | None, keep: set = frozenset()) -> None:
    """Delete NAME-XXXXXX.tar files of these names (None: any name) but `keep`, and what an interrupted
    write left: hifigan.io temporaries of such shards and of dataset.json, and the NAME-XXXXXX.tar.tmp
    and dataset.json.tmp files earlier versions wrote."""
    for p in out.iterdir():
        target = temporary_target(p.name)  # a hidden hifigan.io temporary: the file it was to become
        name = target or p.name
        m = _SHARD_RE.match(name)
        if p.is_file() and (name == "dataset.json.tmp" or target == "dataset.json"
                            or (m and (names is None or m.group(1) in names) and p.name not in keep)):
            p.unlink()


def _load_existing(out: Path, name: str, fingerprint: str, force: bool) -> dict | None:
    """The dataset.json to resume from, or None for a fresh start (after --force cleaned up)."""
    meta_path = out / "dataset.json"
    old = None
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            old = {}
        old = old if isinstance(old, dict) else {}
    tars = sorted(p.name for p in out.glob("*.tar"))
    if old is None and not tars:
        return None
    if old and old.get("fingerprint") == fingerprint:
        return old
    if old is None:
        why = f"{len(tars)} .tar files such as {tars[0]} but no dataset.json"
    elif old:
        why = f"dataset.json of {old.get('name')!r} from another source or other options"
    else:
        why = "an unreadable dataset.json"
    if not force:
        raise UserError(f"{out} already holds another dataset ({why}); pass --force to replace it or choose "
                        f"another --out")
    _remove_shards(out, None if old is None else {name, str(old.get("name"))})
    for s in (old or {}).get("shards", []):
        if isinstance(s, dict) and _SHARD_RE.match(str(s.get("name"))) and (out / s["name"]).is_file():
            (out / s["name"]).unlink()
    meta_path.unlink(missing_ok=True)
    return None


def _verified_prefix(out: Path, old: dict) -> list[tuple[dict, dict]]:
    """(shard entry, resume entry) for the listed shards that are intact, up to the first bad one."""
    kept = []
    for s, r in zip(old.get("shards", []), old.get("resume", [])):
        try:
            p = out / s["name"]
            if not (p.is_file() and p.stat().st_size == s["bytes"] and _sha256(p) == s["sha256"]):
                break
            r = {"items": int(r["items"]), "skipped": dict(r["skipped"]), "passthrough": int(r["passthrough"]),
                 **({"label_max": int(r["label_max"])} if "label_max" in r else {})}
        except (KeyError, TypeError, ValueError):  # a hand-edited dataset.json: rebuild from here
            break
        kept.append((s, r))
    return kept


# ---------------------------------------------------------------- pack()

def _check_paired(label_nc, aspect_ratio, resolution, paired: bool) -> None:
    if label_nc is not None and (not isinstance(label_nc, int) or isinstance(label_nc, bool)
                                 or not 1 <= label_nc <= 256):
        raise UserError(f"--label-nc {label_nc}: must be an int in 1..256 (label maps are 8-bit)")
    if label_nc is not None and not paired:
        raise UserError("--label-nc applies to paired sets; add --labelmaps DIR or --layout")
    if not isinstance(aspect_ratio, (int, float)) or not 0.125 <= aspect_ratio <= 8:
        raise UserError(f"--aspect-ratio {aspect_ratio}: must be a number in 0.125..8 (width / height)")
    if aspect_ratio != 1:
        if resolution is None:
            raise UserError(f"--aspect-ratio {aspect_ratio:g}: give --resolution (the width W) too")
        h = resolution / aspect_ratio
        if abs(h - round(h)) > 1e-6 or round(h) < 1:
            raise UserError(f"--aspect-ratio {aspect_ratio:g}: --resolution {resolution} / {aspect_ratio:g} = {h:g} "
                            f"is not a whole number of rows; pick a width divisible by the aspect ratio")


def _check(resolution, crop, encoding, quality, channels, shard_mb, shard_samples, workers, name):
    if resolution is not None and (not isinstance(resolution, int) or not 0 < resolution <= MAX_RESOLUTION):
        raise UserError(f"--resolution {resolution}: must be an int in 1..{MAX_RESOLUTION} (the width of the "
                        f"images; {MAX_RESOLUTION} is the largest resolution hifigan trains)")
    if crop not in CROPS:
        raise UserError(f"--crop {crop}: unknown crop; use one of {', '.join(CROPS)}")
    if encoding not in ENCODINGS:
        raise UserError(f"--encoding {encoding}: unknown encoding; use one of {', '.join(ENCODINGS)}")
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise UserError(f"--quality {quality}: must be an int in 1..100 (JPEG quality)")
    if channels not in (None, 1, 3):
        raise UserError(f"--channels {channels}: must be 1 or 3 (or unset to follow the first image)")
    if not shard_mb > 0 or not (isinstance(shard_samples, int) and shard_samples >= 1):
        raise UserError(f"--shard-mb {shard_mb} / --shard-samples {shard_samples}: both must be positive")
    if not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers {workers}: must be an int >= 1")
    if not name or "/" in name or name in (".", ".."):
        raise UserError(f"--name {name!r}: must be a plain file name prefix, e.g. ffhq256")


def pack(source, out, *, name=None, resolution=None, crop="center", encoding="jpg", quality=95, reencode=False,
         channels=None, shard_mb=256.0, shard_samples=10000, labels="auto", labelmaps=None, workers=1,
         shuffle=True, seed=0, force=False, progress=True, instancemaps=None, layout=None, split=None,
         label_nc=None, aspect_ratio=1.0) -> dict:
    """Pack `source` into OUT/NAME-XXXXXX.tar shards and OUT/dataset.json; return the dataset.json content.
    Paired sets: labelmaps / instancemaps folders (stem matching) or a `layout` of a reference set
    (data/sources.py), label_nc, and aspect_ratio (W / H, W = resolution) for non-square sets.

    An OSError while writing (disk full, read-only or vanished --out) is a UserError naming --out: the
    shard being written is discarded (its temporary removed), the shards and dataset.json already
    written stay, and rerunning resumes after them."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder for the shards")
    name = out.resolve().name if name is None else name
    _check(resolution, crop, encoding, quality, channels, shard_mb, shard_samples, workers, name)
    paired = labelmaps is not None or layout is not None
    _check_paired(label_nc, aspect_ratio, resolution, paired)
    if layout is not None and channels is None:
        channels = 3  # both reference sets are colour photos; ADE20K has some grayscale JPEGs
    src = _open_source(source, labels, labelmaps, instancemaps, layout, split)
    for line in src.warnings:
        print(line, file=sys.stderr)
    items = src.items
    if shuffle:
        items = [items[i] for i in np.random.Generator(np.random.PCG64(seed)).permutation(len(items))]
    options = dict(name=name, resolution=resolution, crop=crop, encoding=encoding, reencode=reencode,
                   quality=quality if encoding == "jpg" else None, channels=channels, shard_mb=float(shard_mb),
                   shard_samples=shard_samples, shuffle=bool(shuffle), seed=int(seed), labelmaps=paired)
    # new options enter the fingerprint only when set, so sets packed before them still resume
    if instancemaps is not None or layout == "cityscapes":
        options["instancemaps"] = True
    if layout is not None:
        options["layout"] = layout  # the split is in src.identity
    if label_nc is not None or layout is not None:
        options["label_nc"] = label_nc if label_nc is not None else LAYOUT_LABEL_NC[layout]
    if aspect_ratio != 1:
        options["aspect_ratio"] = float(aspect_ratio)
    h = hashlib.sha256(json.dumps([1, options, src.identity, src.classes], sort_keys=True).encode())
    for it in items:
        h.update(f"{it.identity}\t{it.label}\n".encode())
    try:
        return _pack_into(out, source, src, items, options, h.hexdigest(), force, workers, progress)
    except OSError as e:
        what = f"{e.filename}" if e.filename else "the shards"
        raise UserError(f"--out {out}: cannot write {what} ({e.strerror or e}); free disk space or choose a "
                        f"writable folder, then rerun to resume") from None


def _pack_into(out: Path, source, src, items, options: dict, fingerprint: str, force: bool, workers: int,
               progress: bool) -> dict:
    name, resolution, channels = options["name"], options["resolution"], options["channels"]
    out.mkdir(parents=True, exist_ok=True)
    old = _load_existing(out, name, fingerprint, force)
    if old and old.get("complete") and _all_present(out, old):
        print(f"{out}: dataset {name} is already complete ({old['count']} samples in {len(old['shards'])} "
              f"shards); nothing to do")
        return old
    kept = _verified_prefix(out, old) if old else []
    _remove_shards(out, {name}, keep={s["name"] for s, _ in kept})

    first = _probe(items, src.reader) if resolution is None or channels is None else None
    if first is None and (resolution is None or channels is None):
        raise UserError(f"{source}: none of the {len(items)} images could be decoded; nothing to pack")
    encoding = options["encoding"]
    aspect = options.get("aspect_ratio", 1.0)
    width = resolution or min(first.size)
    spec = _Spec(width, channels or (1 if _is_gray(first) else 3), options["crop"], encoding,
                 options["quality"] or 95, options["reencode"], round(width / aspect), options.get("label_nc"))
    meta = {"format": "hifigan-shards", "version": 1, "name": name, "count": 0, "resolution": spec.resolution,
            "height": spec.size[1], "aspect_ratio": aspect, "channels": spec.channels, "encoding": encoding,
            "quality": options["quality"], "crop": spec.crop, "classes": src.classes,
            "paired": options["labelmaps"], "shards": [], "complete": False,
            "fingerprint": fingerprint, "source": src.desc, "skipped": {}, "passthrough": 0, "resume": []}
    if options["labelmaps"]:
        meta.update(label_nc=options.get("label_nc"), instance=bool(options.get("instancemaps")))
    state = {"items": 0, "skipped": {}, "passthrough": 0, "label_max": -1}
    for s, r in kept:
        meta["shards"].append(s)
        meta["resume"].append(r)
        state = r
    if kept:
        print(f"{out}: resuming after {len(kept)} verified shards ({sum(s['count'] for s, _ in kept)} samples)")
    _write_json(out / "dataset.json", _with_totals(meta, state, src.skipped, spec.label_nc))
    state = _pack_items(items, src, spec, out, meta, state, options["shard_mb"] * 1e6, options["shard_samples"],
                        workers, progress)
    if meta["count"] == 0:
        (out / "dataset.json").unlink()
        raise UserError(f"{source}: no usable images ({_skip_text(meta['skipped'])}); nothing to pack")
    meta["complete"] = True
    _write_json(out / "dataset.json", meta)
    if meta["skipped"]:
        examples = src.examples + state.get("examples", [])
        print(f"warning: skipped {sum(meta['skipped'].values())} of {len(src.items) + sum(src.skipped.values())} "
              f"images ({_skip_text(meta['skipped'])}), e.g. {', '.join(examples[:3])}", file=sys.stderr)
    return meta


def _all_present(out: Path, old: dict) -> bool:
    """Every shard a complete dataset.json lists is there with its size (a hand-edited file: no)."""
    try:
        return all((out / s["name"]).is_file() and (out / s["name"]).stat().st_size == s["bytes"]
                   for s in old["shards"])
    except (KeyError, TypeError):
        return False


def _skip_text(skipped: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "none skipped"


def _with_totals(meta: dict, state: dict, listed: Counter, label_nc: int | None = None) -> dict:
    """Totals from the counters; a paired set's label_nc is the given one, else the largest id packed + 1."""
    meta["count"] = sum(s["count"] for s in meta["shards"])
    meta["skipped"] = dict(sorted((listed + Counter(state["skipped"])).items()))
    meta["passthrough"] = state["passthrough"]
    if meta.get("paired"):
        meta["label_nc"] = label_nc if label_nc is not None else (state.get("label_max", -1) + 1 or None)
    return meta


def _pack_items(items, src, spec, out, meta, state, cap_bytes, cap_samples, workers, progress) -> dict:
    """Encode items[state["items"]:] in order and write shards; return the final counters."""
    from tqdm import tqdm
    start = state["items"]
    skipped, passthrough, examples = Counter(state["skipped"]), state["passthrough"], []
    label_max = state.get("label_max", -1)
    seg_reader = _Files(src.labelmap_root) if src.labelmap_root is not None else None
    inst_reader = _Files(src.instmap_root) if src.instmap_root is not None else None
    pool = None
    if workers > 1:
        pool = mp.get_context().Pool(workers, _init_worker, (spec, src.reader, seg_reader, inst_reader))
        results = pool.imap(_work, items[start:], chunksize=max(1, min(32, (len(items) - start) // (workers * 8))))
    else:
        _init_worker(spec, src.reader, seg_reader, inst_reader)
        results = map(_work, items[start:])
    writer, key = None, meta["count"]

    def finish(pos):
        meta["shards"].append(writer.close())
        meta["resume"].append({"items": pos, "skipped": dict(skipped), "passthrough": passthrough})
        if meta.get("paired"):
            meta["resume"][-1]["label_max"] = label_max
        _write_json(out / "dataset.json", _with_totals(meta, meta["resume"][-1], src.skipped, spec.label_nc))

    try:
        bar = tqdm(results, total=len(items), initial=start, disable=not progress, unit="img", desc=meta["name"])
        for pos, (item, res) in enumerate(zip(items[start:], bar), start):
            if res[0] == "skip":
                skipped[res[1]] += 1
                if len(examples) < 3:
                    examples.append(f"{item.ident} ({res[1]})")
                continue
            _, ext, data, seg, inst, passed, top = res
            k = f"{key:08d}"
            members = [(f"{k}.{ext}", data)]
            if item.label is not None:
                members.append((f"{k}.cls", str(item.label).encode("ascii")))
            if seg is not None:
                members.append((f"{k}.seg.png", seg))
            if inst is not None:
                members.append((f"{k}.inst.png", inst))
            if writer is not None and not writer.fits(members, cap_bytes, cap_samples):
                finish(pos)
                writer = None
            if writer is None:
                writer = _ShardWriter(out / f"{meta['name']}-{len(meta['shards']):06d}.tar")
            writer.add(members)
            key += 1
            passthrough += passed
            label_max = max(label_max, top)
        if writer is not None:
            finish(len(items))
            writer = None
    finally:
        if writer is not None:
            writer.abort()
        if pool is not None:
            pool.terminate()
            pool.join()
    final = {"items": len(items), "skipped": dict(skipped), "passthrough": passthrough, "examples": examples,
             "label_max": label_max}
    if meta["resume"]:
        meta["resume"][-1].update({k: final[k] for k in ("items", "skipped", "passthrough")})
        if meta.get("paired"):
            meta["resume"][-1]["label_max"] = label_max
    _with_totals(meta, final, src.skipped, spec.label_nc)
    return final


def summarize(meta: dict) -> str:
    """One line for the end of make_shards.py."""
    size = sum(s["bytes"] for s in meta["shards"])
    pairs = ""
    if meta.get("paired"):
        pairs = f", label maps of {meta.get('label_nc')} labels"
        pairs += " with instance maps" if meta.get("instance") else ""
    return (f"{meta['name']}: {meta['count']} samples in {len(meta['shards'])} shards, {size / 1e6:.1f} MB, "
            f"{meta['resolution']}x{meta.get('height', meta['resolution'])}x{meta['channels']} {meta['encoding']}, "
            f"{len(meta['classes'])} classes{pairs}, {meta.get('passthrough', 0)} passed through, "
            f"skipped: {_skip_text(meta['skipped'])}")
