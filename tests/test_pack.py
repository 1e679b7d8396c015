"""hifigan.data.pack: shards read back with tarfile + PIL only, from real photos and digits."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data as skdata
from skimage.transform import resize

from hifigan.data.builtin import load_lfw, load_mnist
from hifigan.data.pack import pack
from hifigan.errors import UserError
from conftest import run_script

CLASSES = ["cats", "coffee", "space"]  # sorted sub-folder names; class i is tinted towards channel i
PHOTOS = {"cats": skdata.chelsea, "coffee": skdata.coffee, "space": skdata.astronaut}
FILES = [("a.jpg", 64, 64), ("b.JPEG", 120, 80), ("c.png", 64, 96), ("d.webp", 90, 90), ("e.png", 150, 100),
         ("f.jpg", 64, 64)]


def tinted(cls: int, w: int, h: int, offset: int) -> Image.Image:
    """A crop of a real photo whose channel `cls` dominates everywhere, so the class survives JPEG."""
    photo = PHOTOS[CLASSES[cls]]()
    g = photo[offset:offset + h, offset:offset + w].mean(-1) / 255.0  # [H, W]
    rgb = np.repeat(g[..., None] * 110, 3, axis=-1)
    rgb[..., cls] = 145 + g * 110
    return Image.fromarray(rgb.round().astype(np.uint8))


def save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[ext]
    img.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """18 tinted photos in 3 class sub-folders; jpg/JPEG/png/webp, square and not, 64 to 150 px."""
    root = tmp_path_factory.mktemp("photos")
    for cls, name in enumerate(CLASSES):
        for i, (fname, w, h) in enumerate(FILES):
            save(tinted(cls, w, h, 20 * i), root / name / fname)
    return root


def read_shards(out: Path):
    """(dataset.json, samples in key order as [(key, [(member ext, bytes), ...])], per-shard sample counts)."""
    meta = json.loads((out / "dataset.json").read_text())
    samples, counts = [], []
    for s in meta["shards"]:
        with tarfile.open(out / s["name"], "r:") as tar:
            n = 0
            for m in tar.getmembers():
                assert (m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) == (0, 0o444, 0, 0, "", "")
                key, ext = m.name.split(".", 1)
                if not samples or samples[-1][0] != key:
                    samples.append((key, []))
                    n += 1
                samples[-1][1].append((ext, tar.extractfile(m).read()))
            counts.append(n)
    return meta, samples, counts


def decode(b: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(b))
    img.load()
    return img


def tint_class(img: Image.Image) -> int:
    return int(np.asarray(img.convert("RGB"), dtype=np.float64).mean((0, 1)).argmax())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shard_shas(out: Path) -> list[str]:
    return [sha(p) for p in sorted(out.glob("*.tar"))]


def test_subfolders_become_classes_and_samples_are_complete_and_mixed(folder, tmp_path):
    out = tmp_path / "photos64"
    meta = pack(folder, out, resolution=64, shard_samples=5, progress=False)
    disk, samples, counts = read_shards(out)
    assert meta == disk
    assert {k: meta[k] for k in ("format", "version", "name", "count", "resolution", "channels", "encoding",
                                 "quality", "crop", "classes", "paired", "complete", "skipped")} == {
        "format": "hifigan-shards", "version": 1, "name": "photos64", "count": 18, "resolution": 64, "channels": 3,
        "encoding": "jpg", "quality": 95, "crop": "center", "classes": CLASSES, "paired": False, "complete": True,
        "skipped": {}}
    assert [s["name"] for s in meta["shards"]] == [f"photos64-{i:06d}.tar" for i in range(4)]
    for s, n in zip(meta["shards"], counts):
        p = out / s["name"]
        assert s["count"] == n <= 5 and s["bytes"] == p.stat().st_size and s["sha256"] == sha(p)
        assert p.read_bytes()[257:262] == b"ustar"  # plain POSIX tar, not compressed
    assert [k for k, _ in samples] == [f"{i:08d}" for i in range(18)]
    labels = []
    for key, members in samples:
        assert [ext for ext, _ in members] == ["jpg", "cls"]
        img = decode(members[0][1])
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 64))
        labels.append(int(members[1][1].decode("ascii")))
        assert tint_class(img) == labels[-1]
    assert sorted(labels) == [c for c in range(3) for _ in FILES]
    assert len(set(labels[:5])) >= 2 and labels != sorted(labels)  # shuffled: shards mix classes
    assert not list(out.glob("*.tmp"))


def test_center_crop_stretch_and_none_follow_the_documented_policy(tmp_path):
    cat = skdata.chelsea()  # [300, 451, 3]
    (tmp_path / "src").mkdir()
    Image.fromarray(cat).save(tmp_path / "src" / "a.png")
    Image.fromarray(cat[100:148, 200:248]).save(tmp_path / "src" / "b.png")  # already 48 x 48
    got = {}
    for crop in ("center", "stretch"):
        pack(tmp_path / "src", tmp_path / crop, resolution=48, crop=crop, encoding="png", shuffle=False, progress=False)
        _, samples, _ = read_shards(tmp_path / crop)
        got[crop] = np.asarray(decode(samples[0][1][0][1]), dtype=np.float64)
        assert np.array_equal(np.asarray(decode(samples[1][1][0][1])), cat[100:148, 200:248])
    left = (451 - 300) // 2
    want_center = resize(cat[:, left:left + 300], (48, 48), anti_aliasing=True, preserve_range=True)
    want_stretch = resize(cat, (48, 48), anti_aliasing=True, preserve_range=True)
    err = lambda a, b: float(np.abs(a - b).mean())  # noqa: E731
    assert err(got["center"], want_center) < 4 < 4 * err(got["center"], want_stretch)
    assert err(got["stretch"], want_stretch) < 4 < 4 * err(got["stretch"], want_center)
    meta = pack(tmp_path / "src", tmp_path / "none", resolution=48, crop="none", progress=False)
    assert meta["count"] == 1 and meta["skipped"] == {"wrong_size": 1}


def test_jpeg_of_the_target_size_is_stored_byte_for_byte(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    save(tinted(0, 64, 64, 0), src / "a.jpg")
    save(tinted(1, 64, 64, 0).convert("L"), src / "b.jpg")  # gray: must become RGB
    save(tinted(2, 96, 96, 0), src / "c.jpg")  # must be resized
    meta = pack(src, tmp_path / "keep", resolution=64, channels=3, shuffle=False, progress=False)
    _, samples, _ = read_shards(tmp_path / "keep")
    stored = [m[0][1] for _, m in samples]
    assert meta["passthrough"] == 1 and stored[0] == (src / "a.jpg").read_bytes()
    assert stored[1] != (src / "b.jpg").read_bytes() and decode(stored[1]).mode == "RGB"
    assert decode(stored[2]).size == (64, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display": stored upright, so not passed through
    tinted(0, 64, 64, 0).transpose(Image.TRANSPOSE).save(src / "d.jpg", quality=90, exif=exif)
    meta = pack(src, tmp_path / "exif", resolution=64, channels=3, shuffle=False, progress=False)
    upright = decode(read_shards(tmp_path / "exif")[1][3][1][0][1])
    assert meta["passthrough"] == 1 and np.abs(np.asarray(upright, np.float64) - np.asarray(
        ImageOps.exif_transpose(Image.open(src / "d.jpg")), np.float64)).mean() < 3
    meta = pack(src, tmp_path / "again", resolution=64, channels=3, reencode=True, shuffle=False, progress=False)
    _, samples, _ = read_shards(tmp_path / "again")
    assert meta["passthrough"] == 0 and samples[0][1][0][1] != (src / "a.jpg").read_bytes()


def tar_size(content: int) -> int:
    return -(-(content + 1024) // 10240) * 10240


def sample_bytes(members) -> int:
    return sum(512 + -(-len(b) // 512) * 512 for _, b in members)


def test_shards_close_before_exceeding_the_byte_and_sample_caps(folder, tmp_path):
    cap = 30_000
    meta = pack(folder, tmp_path / "mb", resolution=64, encoding="png", shard_mb=cap / 1e6, progress=False)
    _, samples, counts = read_shards(tmp_path / "mb")
    assert len(counts) >= 3 and max(counts) >= 2 and sum(counts) == 18
    start = 0
    for i, (s, n) in enumerate(zip(meta["shards"], counts)):
        content = sum(sample_bytes(m) for _, m in samples[start:start + n])
        assert s["bytes"] == tar_size(content) and (s["bytes"] <= cap or n == 1)
        if i + 1 < len(counts):  # closed only because the next sample would not fit
            assert tar_size(content + sample_bytes(samples[start + n][1])) > cap
        start += n
    pack(folder, tmp_path / "n", resolution=64, shard_samples=4, progress=False)
    assert read_shards(tmp_path / "n")[2] == [4, 4, 4, 4, 2]


@pytest.mark.parametrize("encoding", ["jpg", "webp"])
def test_two_workers_write_the_same_bytes_as_one(folder, tmp_path, encoding):
    kw = dict(resolution=48, encoding=encoding, shard_samples=7, progress=False)
    one = pack(folder, tmp_path / "w1" / "set", workers=1, **kw)
    two = pack(folder, tmp_path / "w2" / "set", workers=2, **kw)
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]
    assert shard_shas(tmp_path / "w1" / "set") == shard_shas(tmp_path / "w2" / "set") and len(one["shards"]) == 3


def test_interrupted_pack_resumes_keeping_verified_shards(folder, tmp_path, capsys):
    out = tmp_path / "set"
    kw = dict(resolution=48, shard_samples=4, progress=False)
    full = pack(folder, out, **kw)
    want = shard_shas(out)
    assert len(want) == 5
    # what a run killed while writing shard 3 leaves: 3 shards listed, complete=false, a partial .tmp
    for s in full["shards"][3:]:
        (out / s["name"]).unlink()
    cut = dict(full, shards=full["shards"][:3], resume=full["resume"][:3], complete=False, count=12)
    (out / "dataset.json").write_text(json.dumps(cut))
    (out / "set-000003.tar.tmp").write_bytes(b"partial")
    for s in full["shards"][:3]:
        os.utime(out / s["name"], ns=(10**18, 10**18))
    meta = pack(folder, out, **kw)
    assert meta == full and shard_shas(out) == want
    assert [(out / s["name"]).stat().st_mtime_ns for s in full["shards"][:3]] == [10**18] * 3
    assert not list(out.glob("*.tmp")) and "resuming after 3 verified shards" in capsys.readouterr().out
    # a corrupt shard is rebuilt, and so is everything after it
    (out / "set-000001.tar").write_bytes(b"x" * full["shards"][1]["bytes"])
    (out / "dataset.json").write_text(json.dumps(dict(full, complete=False)))
    assert pack(folder, out, **kw) == full and shard_shas(out) == want
    assert (out / "set-000000.tar").stat().st_mtime_ns == 10**18
    # complete: nothing is rewritten
    assert pack(folder, out, **kw) == full and "already complete" in capsys.readouterr().out
    assert (out / "set-000004.tar").stat().st_mtime_ns != 10**18


def test_another_dataset_in_out_is_refused_unless_forced(folder, tmp_path):
    out = tmp_path / "set"
    pack(folder, out, resolution=32, shard_samples=4, progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"already holds another dataset .*--force"):
        pack(folder, out, resolution=24, progress=False)
    assert json.loads((out / "dataset.json").read_text())["resolution"] == 32
    meta = pack(folder, out, resolution=24, progress=False, force=True)
    assert meta["resolution"] == 24 and sorted(p.name for p in out.iterdir()) == [
        "dataset.json", "notes.txt", "set-000000.tar"]
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "old-000000.tar").write_bytes(b"\0" * 10240)
    with pytest.raises(UserError, match="no dataset.json"):
        pack(folder, stray, progress=False)
    pack(folder, stray, progress=False, force=True)
    assert not (stray / "old-000000.tar").exists() and (stray / "stray-000000.tar").exists()


def test_broken_files_are_skipped_counted_and_reported_once(tmp_path, capsys):
    src = tmp_path / "src"
    for i in range(4):
        save(tinted(i % 3, 40, 50, 10 * i), src / f"ok{i}.png")
    (src / "empty.png").write_bytes(b"")
    (src / "text.jpg").write_text("not an image")
    whole = io.BytesIO()
    tinted(0, 64, 64, 0).save(whole, "JPEG")
    (src / "cut.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    meta = pack(src, tmp_path / "out", resolution=32, progress=False)
    assert meta["count"] == 4 and meta["skipped"] == {"empty": 1, "undecodable": 2}
    assert read_shards(tmp_path / "out")[0]["skipped"] == meta["skipped"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped 3 of 7" in err[0] and "cut.jpg (undecodable)" in err[0]
    for f in src.glob("ok*"):
        f.unlink()
    with pytest.raises(UserError, match="nothing to pack"):
        pack(src, tmp_path / "none", progress=False)
    with pytest.raises(UserError, match="nothing to pack"):
        pack(src, tmp_path / "none", resolution=32, progress=False)
    assert not (tmp_path / "none" / "dataset.json").exists()


def test_label_maps_follow_their_image_through_the_crop(tmp_path):
    src, maps = tmp_path / "img", tmp_path / "maps"
    sizes = {"a": (120, 80), "b": (70, 110), "c": (64, 64), "d": (90, 60)}
    for i, (stem, (w, h)) in enumerate(sizes.items()):
        img = tinted(i % 3, w, h, 30 * i)
        save(img, src / f"{stem}.png")
        if stem != "d":  # d has no label map
            levels = np.digitize(np.asarray(img.convert("L")), [90, 150]).astype(np.uint8)  # 0, 1, 2
            save(Image.fromarray(levels), maps / "sub" / f"{stem}.png")
    meta = pack(src, tmp_path / "out", resolution=48, encoding="png", labelmaps=maps, shuffle=False, progress=False)
    assert meta["paired"] and meta["count"] == 3 and meta["skipped"] == {"missing_labelmap": 1}
    _, samples, _ = read_shards(tmp_path / "out")
    for (key, members), stem in zip(samples, "abc"):
        assert [e for e, _ in members] == ["png", "seg.png"]
        seg = decode(members[1][1])
        assert seg.mode == "L" and seg.size == (48, 48) and set(np.unique(seg)) <= {0, 1, 2}
        m = Image.open(maps / "sub" / f"{stem}.png")
        s = min(m.size)
        box = ((m.size[0] - s) // 2, (m.size[1] - s) // 2)
        want = m.crop((*box, box[0] + s, box[1] + s)).resize((48, 48), Image.NEAREST)
        assert np.array_equal(np.asarray(seg), np.asarray(want))
        img_levels = np.digitize(np.asarray(decode(members[0][1]).convert("L")), [90, 150])
        assert (img_levels == np.asarray(seg)).mean() > 0.8  # the map belongs to this image


def test_labels_json_names_classes_and_unlisted_images_are_skipped(tmp_path):
    src = tmp_path / "src"
    colour = {0: "red", 1: "green", 2: "blue"}
    truth = {}
    for i in range(7):
        save(tinted(i % 3, 48, 48, 10 * i), src / f"{i}.png")
        truth[f"{i}.png"] = i % 3
    (src / "labels.json").write_text(json.dumps({p: colour[c] for p, c in truth.items() if p != "6.png"}))
    meta = pack(src, tmp_path / "named", progress=False)
    assert meta["classes"] == ["blue", "green", "red"] and meta["skipped"] == {"missing_label": 1}
    _, samples, _ = read_shards(tmp_path / "named")
    for _, members in samples:
        assert meta["classes"][int(members[1][1])] == colour[tint_class(decode(members[0][1]))]
    stylegan = tmp_path / "dataset.json"
    stylegan.write_text(json.dumps({"labels": [[p, c] for p, c in truth.items()]}))
    meta = pack(src, tmp_path / "ints", labels=str(stylegan), progress=False)
    assert meta["classes"] == ["0", "1", "2"] and meta["count"] == 7
    for _, members in read_shards(tmp_path / "ints")[1]:
        assert int(members[1][1]) == tint_class(decode(members[0][1]))
    meta = pack(src, tmp_path / "none", labels="none", progress=False)
    assert meta["classes"] == [] and [e for e, _ in read_shards(tmp_path / "none")[1][0][1]] == ["jpg"]
    (tmp_path / "null.json").write_text('{"labels": null}')  # StyleGAN's unconditional form
    assert pack(src, tmp_path / "null", labels=str(tmp_path / "null.json"), progress=False)["classes"] == []
    one = tmp_path / "one"
    for i in range(2):
        save(tinted(i, 40, 40, 0), one / "only" / f"{i}.png")
    assert pack(one, tmp_path / "auto1", progress=False)["classes"] == []  # auto needs >= 2 sub-folders
    assert pack(one, tmp_path / "folders1", labels="folders", progress=False)["classes"] == ["only"]


def test_zip_of_the_folder_gives_the_same_shards(folder, tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(folder).as_posix())
    kw = dict(resolution=32, shard_samples=6, name="p", progress=False)
    from_zip = pack(archive, tmp_path / "z", workers=2, **kw)
    from_dir = pack(folder, tmp_path / "d", **kw)
    assert from_zip["classes"] == CLASSES and from_zip["shards"] == from_dir["shards"]
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(UserError, match="cannot read the zip"):
        pack(tmp_path / "bad.zip", tmp_path / "b", progress=False)


def test_digit_arrays_keep_their_labels_in_every_layout(tmp_path):
    x, y = load_mnist(None)
    x, y = x[::25], y[::25]  # 200 digits, 20 per class
    np.savez(tmp_path / "nhw.npz", images=x, labels=y)
    np.savez(tmp_path / "nchw.npz", x=x[:, None] / 255.0, y=y)
    np.save(tmp_path / "nhwc.npy", x[..., None])
    kw = dict(encoding="png", shard_samples=64, name="d", progress=False)
    metas = {k: pack(tmp_path / f"{k}", tmp_path / k.replace(".", "_"), **kw)
             for k in ("nhw.npz", "nchw.npz", "nhwc.npy")}
    assert metas["nhw.npz"]["shards"] == metas["nchw.npz"]["shards"]
    assert metas["nhw.npz"]["classes"] == [str(i) for i in range(10)] and metas["nhwc.npy"]["classes"] == []
    label_of = {img.tobytes(): int(c) for img, c in zip(x, y)}
    meta, samples, _ = read_shards(tmp_path / "nhw_npz")
    assert (meta["count"], meta["resolution"], meta["channels"]) == (200, 28, 1)
    for _, members in samples:
        img = decode(members[0][1])
        assert img.mode == "L" and label_of[np.asarray(img).tobytes()] == int(members[1][1])
    assert [e for e, _ in read_shards(tmp_path / "nhwc_npy")[1][0][1]] == ["png"]
    np.save(tmp_path / "bad.npy", x.astype(np.float32))  # floats outside [0, 1]
    with pytest.raises(UserError, match=r"scale them to \[0, 1\]"):
        pack(tmp_path / "bad.npy", tmp_path / "bad", progress=False)


def test_builtin_mnist_and_lfw(tmp_path):
    meta = pack("mnist", tmp_path / "mnist", encoding="png", workers=2, progress=False)
    assert (meta["count"], meta["resolution"], meta["channels"]) == (5000, 28, 1)
    assert meta["classes"] == [str(i) for i in range(10)] and meta["source"] == "builtin:mnist"
    labels = [int(m[1][1]) for _, m in read_shards(tmp_path / "mnist")[1]]
    assert np.bincount(labels).tolist() == [500] * 10
    x, y = load_lfw()
    meta = pack("builtin:lfw", tmp_path / "lfw", encoding="png", progress=False)
    assert (meta["count"], meta["resolution"], meta["classes"]) == (200, 25, ["face", "non-face"])
    label_of = {img.tobytes(): int(c) for img, c in zip(x, y)}
    samples = read_shards(tmp_path / "lfw")[1]
    assert [label_of[np.asarray(decode(m[0][1])).tobytes()] for _, m in samples] == [int(m[1][1]) for _, m in samples]
    assert y[:100].tolist() == [0] * 100 and y[100:].tolist() == [1] * 100


def test_gray_sources_pack_to_one_channel_and_alpha_goes_on_white(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(skdata.camera()[:200, :300]).save(src / "a.png")
    Image.fromarray(skdata.coins()).save(src / "b.jpg")
    meta = pack(src, tmp_path / "gray", resolution=32, encoding="png", shuffle=False, progress=False)
    assert meta["channels"] == 1
    assert [decode(m[0][1]).mode for _, m in read_shards(tmp_path / "gray")[1]] == ["L", "L"]
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:16, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(src / "c.png")
    pack(src, tmp_path / "rgb", resolution=32, channels=3, encoding="png", shuffle=False, progress=False)
    imgs = [np.asarray(decode(m[0][1])) for _, m in read_shards(tmp_path / "rgb")[1]]
    assert all(i.shape == (32, 32, 3) for i in imgs) and (imgs[0][..., 0] == imgs[0][..., 2]).all()
    assert (imgs[2][:16] == [200, 0, 0]).all() and (imgs[2][16:] == 255).all()


@pytest.mark.parametrize("kw, msg", [
    (dict(resolution=0), "must be an int in 1..8192"), (dict(quality=101), "1..100"), (dict(encoding="gif"), "jpg, png"),
    (dict(crop="fit"), "center, stretch, none"), (dict(source="nope"), "unknown built-in dataset 'nope'"),
    (dict(source="/no/such/dir"), "no such file or folder"), (dict(labels="missing.json"), "no such file")])
def test_bad_options_raise_one_line_user_errors(folder, tmp_path, kw, msg):
    kw = dict(dict(source=folder, out=tmp_path / "o", progress=False), **kw)
    with pytest.raises(UserError, match=msg) as e:
        pack(**kw)
    assert "\n" not in str(e.value)


def test_cli_packs_and_reports_errors_without_traceback(tmp_path):
    r = run_script("make_shards.py", "--source", tmp_path / "missing", "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: --source")
    r = run_script("make_shards.py", "--source", "lfw", "--out", tmp_path / "lfw", "--encoding", "webp",
                   "--shard-samples", "64", "--no-progress")
    assert r.stdout.strip().splitlines()[-1].startswith("lfw: 200 samples in 4 shards")
    assert json.loads((tmp_path / "lfw" / "dataset.json").read_text())["encoding"] == "webp"
