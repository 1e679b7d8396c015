"""The shard stream: every packed sample once per epoch for any ranks x workers, exact resume,
bad data skipped and counted, clear errors, and training from shards in one and two processes."""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PY, ROOT, env1, latest_ckpt, read_weights, run_script, tiny_overrides, torchrun_cmd
from hifigan.data.builtin import load_mnist
from hifigan.data.pack import pack
from hifigan.data.shards import REASONS, ShardFeed, ShardSet, ShardStream, make_loader
from hifigan.errors import UserError


# -- data the tests pack -------------------------------------------------------------------------
def _photo_folder(root: Path) -> Path:
    """18 real photo crops of three sizes in three class folders, as jpg, png and webp."""
    import skimage.data as d
    photos = [d.astronaut(), d.coffee(), d.chelsea(), d.rocket()]
    rng = np.random.default_rng(0)
    for i in range(18):
        p = photos[i % len(photos)]
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        y, x = int(rng.integers(0, p.shape[0] - h)), int(rng.integers(0, p.shape[1] - w))
        cls = ("cat", "dog", "owl")[i % 3]
        ext = ("jpg", "png", "webp")[i % 3]
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(p[y:y + h, x:x + w]).save(root / cls / f"img{i:02d}.{ext}")
    return root


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Four sources packed into small shards: {name: (out dir, expected labels by sample key or None)}."""
    t = tmp_path_factory.mktemp("sources")
    folder = _photo_folder(t / "photos")
    with zipfile.ZipFile(t / "photos.zip", "w") as z:
        for f in sorted(folder.rglob("*.*")):
            z.write(f, f.relative_to(folder))
    x, y = load_mnist(None)
    pick = np.random.default_rng(1).choice(len(x), 40, replace=False)
    np.savez(t / "digits.npz", images=x[pick], labels=y[pick])
    out = {}
    for name, src, kw in (("folder", folder, {"resolution": 16}), ("zip", t / "photos.zip", {"resolution": 16}),
                          ("npz", t / "digits.npz", {}), ("mnist", "mnist", {})):
        dest = t / f"shards-{name}"
        kw = {"encoding": "png", "shard_samples": 7 if name != "mnist" else 900, **kw}
        pack(str(src), str(dest), progress=False, **kw)
        out[name] = dest
    return out


def _read_packed(out: Path) -> dict:
    """Decode the tars independently of hifigan: key -> (uint8 HWC image, class or -1)."""
    meta = json.loads((out / "dataset.json").read_text())
    found = {}
    for sh in meta["shards"]:
        with tarfile.open(out / sh["name"]) as tf:
            members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
        for name, data in members.items():
            key, ext = name.split(".", 1)
            if ext == "png":
                arr = np.asarray(Image.open(io.BytesIO(data)))
                arr = arr[:, :, None] if arr.ndim == 2 else arr
                cls = int(members[f"{key}.cls"]) if f"{key}.cls" in members else -1
                found[key] = (arr, cls)
    assert len(found) == meta["count"]
    return found


def _epoch(shards, world, workers, **kw):
    """One epoch from every rank of a `world`-rank job: list of (key, image HWC, class)."""
    got = []
    for rank in range(world):
        st = ShardStream(shards, batch_size=5, rank=rank, world=world, workers=workers, epochs=1,
                         with_keys=True, seed=3, shuffle_buffer=4, **kw)
        for b in make_loader(st):
            imgs = b["img"].permute(0, 2, 3, 1).numpy()
            cs = b["c"].tolist() if b["c"] is not None else [-1] * len(imgs)
            got += list(zip(b["keys"], imgs, cs))
    return got


# -- acceptance 1: round trip ----------------------------------------------------------------------
@pytest.mark.parametrize("source", ["folder", "zip", "npz", "mnist"])
def test_one_epoch_yields_every_packed_sample_once_for_any_ranks_and_workers(packed, source):
    out = packed[source]
    truth = _read_packed(out)
    shards = ShardSet.open(str(out))
    ncls = len(shards.classes)
    assert ncls == (3 if source in ("folder", "zip") else 10)
    orders = []
    for world, workers in ((1, 1), (1, 3), (2, 1), (2, 3)):
        got = _epoch(shards, world, workers, num_classes=ncls)
        keys = [k for k, _, _ in got]
        assert len(keys) == len(set(keys)) == len(truth), (world, workers)  # none twice, none lost
        assert set(keys) == set(truth)
        for key, img, cls in got:
            assert np.array_equal(img, truth[key][0]), key
            assert cls == truth[key][1], key
        orders.append(keys)
    assert len({tuple(o) for o in orders}) > 1  # the readers really split the work differently


def test_labels_match_the_source_labels(packed):
    """npz: every delivered digit carries the label it had in the array it was packed from."""
    with np.load(packed["npz"].parent / "digits.npz") as z:
        x, y = z["images"], z["labels"]
    by_pixels = {x[i].tobytes(): int(y[i]) for i in range(len(x))}
    got = _epoch(ShardSet.open(str(packed["npz"])), 1, 0, num_classes=10)
    assert sorted(by_pixels[img[:, :, 0].tobytes()] for _, img, _ in got) == sorted(y.tolist())
    assert all(by_pixels[img[:, :, 0].tobytes()] == cls for _, img, cls in got)


def test_patterns_lists_json_and_pipe_name_the_same_shards(packed):
    out = packed["folder"]
    names = sorted(p.name for p in out.glob("*.tar"))
    stem = names[0].rsplit("-", 1)[0]
    by_dir = ShardSet.open(str(out))
    by_pattern = ShardSet.open(f"{out}/{stem}-{{000000..{len(names) - 1:06d}}}.tar")
    by_list = ShardSet.open([str(out / n) for n in names])
    by_json = ShardSet.open(str(out / "dataset.json"))
    pipe = f"pipe:cat {out}/{stem}-{{000000..{len(names) - 1:06d}}}.tar"
    with pytest.raises(UserError, match="runs a shell command"):  # pipe: is code: refused unless allowed
        ShardSet.open(pipe, meta=str(out / "dataset.json"))
    piped = ShardSet.open(pipe, meta=str(out / "dataset.json"), allow_pipe=True)
    for s in (by_pattern, by_list, by_json):
        assert [Path(u).name for u in s.urls] == names and s.counts == by_dir.counts
    assert piped.counts == by_dir.counts and piped.urls[0].startswith("pipe:cat ")
    assert sorted(k for k, _, _ in _epoch(piped, 1, 0)) == sorted(k for k, _, _ in _epoch(by_dir, 1, 0))
    (out.parent / "nometa").mkdir(exist_ok=True)
    for n in names:  # without a dataset.json the counts come from the tar headers
        (out.parent / "nometa" / n).write_bytes((out / n).read_bytes())
    assert ShardSet.open(str(out.parent / "nometa"), what="x").counts == by_dir.counts


def test_a_pattern_that_matches_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="matches no shards"):
        ShardSet.open(f"{tmp_path}/ffhq-{{000000..000009}}.tar")
    with pytest.raises(UserError, match="no dataset.json and no .tar"):
        ShardSet.open(str(tmp_path))


# -- acceptance 2: resume ---------------------------------------------------------------------------
def _consume(shards, world, workers, batches, state=None, **kw):
    """Per rank: the first `batches` batches (keys + image sums) and the consumed state (positions, next)."""
    out, states = [], []
    for rank in range(world):
        pos, first = (state[rank] if state else (None, 0))
        st = ShardStream(shards, batch_size=6, rank=rank, world=world, workers=workers, seed=11, shuffle_buffer=9,
                         xflip=True, positions=pos, first_worker=first, with_keys=True, **kw)
        positions, nxt, got = list(st.positions), first, []
        for b in make_loader(st):
            got.append((tuple(b["keys"]), int(b["img"].long().sum())))
            positions[b["worker"]], nxt = b["pos"], (b["worker"] + 1) % st.readers
            if len(got) == batches:
                break
        out.append(got)
        states.append((positions, nxt))
    return out, states


@pytest.mark.parametrize("world, workers", [(1, 0), (2, 2)])
def test_resumed_stream_continues_exactly_where_it_stopped(packed, world, workers):
    """Guarantee: same ranks/workers/seed/shards -> no sample repeated or skipped, across epochs."""
    shards = ShardSet.open(str(packed["npz"]))  # 40 digits; 40 batches of 6 = 6 epochs
    straight, _ = _consume(shards, world, workers, 40 // world, num_classes=10)
    first, state = _consume(shards, world, workers, 17 // world, num_classes=10)
    rest, _ = _consume(shards, world, workers, 40 // world - 17 // world, state=state, num_classes=10)
    for r in range(world):
        assert first[r] + rest[r] == straight[r]
    flat = [k for r in range(world) for keys, _ in straight[r] for k in keys]
    counts = Counter(flat)
    assert len(flat) > 2 * shards.total and max(counts.values()) - min(counts.values()) <= 1  # epochs tile


def test_feed_state_survives_a_checkpoint_and_a_topology_change_restarts_the_epoch(packed, capfd):
    from hifigan.config import DataConfig
    cfg = DataConfig(shards=str(packed["mnist"]), resolution=28, workers=0, shuffle_buffer=50)
    feeds = [ShardFeed(cfg, 5, r, 2, 8, (1, 28, 28), 10, "cpu") for r in range(2)]
    for _ in range(400):  # 400 x 8 per rank = 1.28 epochs
        for f in feeds:
            f.next(0, "cpu")
    states = [torch.load(_roundtrip(f.state_dict()), weights_only=True) for f in feeds]
    again = ShardFeed(cfg, 5, 1, 2, 8, (1, 28, 28), 10, "cpu")
    again.load_state_dict(states, 2)
    assert again.positions == feeds[1].positions and again.next_worker == feeds[1].next_worker
    assert torch.equal(again.next(0, "cpu")[0], feeds[1].next(0, "cpu")[0])
    one = ShardFeed(cfg, 5, 0, 1, 8, (1, 28, 28), 10, "cpu")
    one.load_state_dict(states, 2)
    assert one.positions == [shards_total(packed) * 1]  # beginning of epoch 1: nothing skipped
    assert "restarts at the beginning of epoch 1" in capfd.readouterr().err


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def shards_total(packed) -> int:
    return ShardSet.open(str(packed["mnist"])).total


# -- acceptance 3: bad data -------------------------------------------------------------------------
def _rewrite(path: Path, edit) -> None:
    with tarfile.open(path) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]
    members = edit(members)
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def _png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def damaged(tmp_path):
    """60 digits at 32x32 in 6 shards, damaged in every way the issue lists; returns (dir, bad keys)."""
    x, y = load_mnist(None)
    pick = np.random.default_rng(2).choice(len(x), 60, replace=False)
    np.savez(tmp_path / "d.npz", images=x[pick], labels=y[pick])
    out = tmp_path / "bad"
    meta = pack(str(tmp_path / "d.npz"), str(out), resolution=32, encoding="png", shard_samples=10, progress=False)
    sh = [out / s["name"] for s in meta["shards"]]
    keys = lambda p: sorted({m.split(".")[0] for m in tarfile.open(p).getnames()})  # noqa: E731
    k0, k1, k2 = keys(sh[0]), keys(sh[1]), keys(sh[2])
    bad = {"undecodable": {k0[1]}, "wrong_size": {k0[4]}, "missing_label": {k0[7]}, "non_image": {"zzjunk"}}

    def edit0(ms):
        ms = [(n, b"\x89PNG garbage" if n == f"{k0[1]}.png" else _png(30) if n == f"{k0[4]}.png" else d)
              for n, d in ms]
        return [(n, d) for n, d in ms if n != f"{k0[7]}.cls"]
    _rewrite(sh[0], edit0)
    _rewrite(sh[1], lambda ms: ms[:4] + [("zzjunk.txt", b"not an image")] + ms[4:])  # after sample 2
    raw = sh[2].read_bytes()
    sh[2].write_bytes(raw[:len(raw) // 2 + 700])  # cut inside a member's data
    meta["shards"][1]["count"] += 1
    (out / "dataset.json").write_text(json.dumps(meta))
    readable, last = [], None  # a sample is whole only when another sample's header follows it
    with tarfile.open(sh[2]) as tf:
        try:
            for m in tf:
                tf.extractfile(m).read()
                key = m.name.split(".")[0]
                if key != last:
                    readable.append(key)
                    last = key
        except (tarfile.TarError, OSError):
            pass
    readable = set(readable[:-1])
    bad["truncated"] = set(k2) - readable
    assert 0 < len(bad["truncated"]) < len(k2)
    return out, bad, [s["name"] for s in meta["shards"][:3]]


@pytest.mark.parametrize("workers", [0, 2])
def test_each_kind_of_bad_data_is_skipped_counted_and_reported_once_per_shard(damaged, capfd, workers):
    out, bad, names = damaged
    shards = ShardSet.open(str(out))
    st = ShardStream(shards, batch_size=4, workers=workers, epochs=2, num_classes=10, with_keys=True, seed=1,
                     shuffle_buffer=8)
    keys, skipped = [], {}
    for b in make_loader(st):  # two epochs: a shard met again is not reported again
        keys += b["keys"]
        skipped[b["worker"]] = b["skipped"]
    everything = {k for p in out.glob("*.tar") for k in (m.split(".")[0] for m in _names(p))}
    all_bad = set().union(*bad.values())
    assert set(keys) == everything - all_bad and len(keys) == 2 * len(set(keys))
    total = Counter()
    for c in skipped.values():  # a reader's last batch may come before the bad samples after it
        total.update(c)
    assert all(len(bad[r]) <= total[r] <= 2 * len(bad[r]) for r in REASONS), total
    if workers == 0:  # one epoch in one reader: the last batch carries every count
        st = ShardStream(shards, batch_size=4, epochs=1, num_classes=10, seed=1, shuffle_buffer=8, verbose=False)
        assert list(make_loader(st))[-1]["skipped"] == {r: len(bad[r]) for r in REASONS}
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("warning: data: shard ")]
    readers = [f"reader {i} of {workers}" for i in range(workers)] or [""]
    for n in names:  # the reader that meets a damaged shard reports it once, when it first meets it
        lines = [ln for ln in err if n in ln]
        assert 1 <= len(lines) <= len(readers), err
        assert all(sum(r in ln for ln in lines) <= 1 for r in readers), err
    cut = [ln for ln in err if names[2] in ln]
    assert all("truncated or damaged (read " in ln and " of 10 samples); skipped the rest" in ln for ln in cut), cut
    bad0 = [ln for ln in err if names[0] in ln]
    assert any(w in bad0[0] for w in ("does not decode", "wrong size", "class label")), bad0
    assert "no image member" in next(ln for ln in err if names[1] in ln)
    assert len(err) == len({ln for ln in err})


def _names(p: Path) -> list[str]:
    out = []
    try:
        with tarfile.open(p) as tf:
            for m in tf:
                out.append(m.name)
    except (tarfile.TarError, OSError):
        pass
    return out


def test_training_continues_over_bad_data_and_logs_the_counts(damaged, tmp_path):
    out, bad, _ = damaged
    run = tmp_path / "run"
    run_script("train.py", ROOT / "configs/mnist_dcgan.yaml", *tiny_overrides(run, **{
        "data.shards": out, "data.workers": 1, "train.total_kimg": 0.16, "log.every_kimg": 0.08}))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(run / "tensorboard"))
    ea.Reload()
    assert ea.Scalars("Data/skipped/undecodable")[-1].value >= 1
    assert ea.Scalars("Timing/data_images_per_s")[-1].value > 0


def test_shards_that_are_all_bad_stop_training_with_one_line(damaged, tmp_path):
    out, _, _ = damaged
    for p in out.glob("*.tar"):
        _rewrite(p, lambda ms: [(n, b"garbage" if n.endswith(".png") else d) for n, d in ms])
    r = run_script("train.py", ROOT / "configs/mnist_dcgan.yaml",
                   *tiny_overrides(tmp_path / "run", **{"data.shards": out, "data.workers": 1}), check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "no usable sample" in r.stderr.strip().splitlines()[-1]
    r = run_script("train.py", ROOT / "configs/mnist_dcgan.yaml",
                   *tiny_overrides(tmp_path / "run2", **{"data.shards": f"{out}/nope-{{0..3}}.tar"}), check=False)
    assert r.returncode == 2 and "matches no shards" in r.stderr and "Traceback" not in r.stderr


# -- acceptance 4: training from shards -------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist32(tmp_path_factory):
    out = tmp_path_factory.mktemp("m32") / "mnist32"
    pack("mnist", str(out), resolution=32, encoding="png", shard_samples=400, progress=False)
    return out


def _train_args(run, shards, kimg, **extra):
    return [ROOT / "configs/mnist_dcgan.yaml", *tiny_overrides(run, **{
        "data.shards": shards, "data.workers": 2, "data.xflip": "true", "train.total_kimg": kimg,
        "checkpoint.every_kimg": 0.32, "log.every_kimg": 0.16, "log.image_every_kimg": 10, **extra})]


def test_a_stopped_and_restarted_run_reads_the_same_data_and_ends_with_the_same_weights(mnist32, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    run_script("train.py", *_train_args(ref, mnist32, 0.96))
    run_script("train.py", *_train_args(run, mnist32, 0.48))
    run_script("train.py", *_train_args(run, mnist32, 0.96))
    a, b = latest_ckpt(ref), latest_ckpt(run)
    assert a.name == b.name
    sa, sb = (torch.load(c / "state.pt", weights_only=True) for c in (a, b))
    assert sa["data"] == sb["data"] and sa["data"][0]["positions"] != [0, 0]
    for net in ("G", "D", "G_ema"):
        wa, wb = read_weights(a / f"{net}.safetensors"), read_weights(b / f"{net}.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), net


def test_two_processes_train_from_shards(mnist32, tmp_path):
    run = tmp_path / "ddp"
    cmd = torchrun_cmd(2, "train.py", *_train_args(run, mnist32, 0.32))
    r = subprocess.run(cmd, cwd=ROOT, env=env1(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    state = torch.load(latest_ckpt(run) / "state.pt", weights_only=True)
    assert len(state["data"]) == 2 and len(set(state["digests"])) == 1
    # each rank read its own readers: 0.32 kimg / 2 ranks = 160 images per rank over its 2 readers
    assert [sum(s["positions"]) for s in state["data"]] == [160, 160]


# -- multi-resolution ------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding, tol", [("png", 0.0), ("jpg", 1.5)])
def test_the_same_shards_deliver_every_power_of_two_resolution(tmp_path, encoding, tol):
    """32x32 shards read at 16, 8 and 4: the 2x2-average pyramid (JPEG: DCT-domain draft, close to it)."""
    _photo_folder(tmp_path / "photos")
    out = tmp_path / "s"
    pack(str(tmp_path / "photos"), str(out), resolution=32, encoding=encoding, quality=95, progress=False)
    shards = ShardSet.open(str(out))
    full = {k: img.astype(np.float64) for k, img, _ in _epoch(shards, 1, 0, num_classes=3)}
    for res in (16, 8, 4):
        got = _epoch(shards, 1, 0, num_classes=3, resolution=res)
        assert len(got) == len(full)
        errs = []
        for key, img, _ in got:
            assert img.shape == (res, res, 3)
            f = 32 // res
            box = full[key].reshape(res, f, res, f, 3).mean(axis=(1, 3))
            errs.append(np.abs(img - box).mean())
        assert max(errs) <= tol + 0.5, (res, max(errs))  # +0.5: rounding to uint8
    with pytest.raises(UserError, match="divided by a whole number"):
        ShardStream(shards, batch_size=2, resolution=12)


def test_ctrl_c_to_the_whole_process_group_still_checkpoints(mnist32, tmp_path):
    """A terminal's Ctrl-C (or a scheduler's SIGTERM) reaches the reader processes too."""
    import os
    import signal
    import time
    run = tmp_path / "run"
    cmd = [str(x) for x in (PY, ROOT / "launch/train.py", *_train_args(run, mnist32, 50))]
    seen = None
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env1(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        t0 = time.time()
        while not (run / "checkpoints" / "latest").exists() or latest_ckpt(run).name == seen:
            assert proc.poll() is None and time.time() - t0 < 120  # wait for a checkpoint of this process
            time.sleep(0.05)
        before = latest_ckpt(run).name
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        assert "stopped by signal" in out and latest_ckpt(run).name != before
        seen = latest_ckpt(run).name
