"""Damaged and hostile data input: make_shards and the shard stream skip and report what they can,
and stop with one line (exit code 2, no traceback) where they cannot; `pipe:` shards are code and
run only when a recipe allows them, never in --dry-run."""
from __future__ import annotations

import contextlib
import errno
import importlib.util
import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PY, ROOT, env1, run_script
from hifigan.data import pack as pack_mod
from hifigan.data.pack import pack
from hifigan.data.shards import ShardSet, ShardStream, iter_samples, make_loader
from hifigan.errors import UserError, run_main


def _launch(name: str):
    spec = importlib.util.spec_from_file_location(f"launch_{name}", ROOT / "launch" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _one_line_error(capsys_or_text) -> str:
    """The stderr of a failed entry point: exactly one line, `error: ...`, and no traceback."""
    err = capsys_or_text if isinstance(capsys_or_text, str) else capsys_or_text.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _images(root: Path, n: int = 4, size: int = 20) -> Path:
    for i in range(n):
        d = root / ("ab"[i % 2])
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size, 3), 25 * i, np.uint8)).save(d / f"x{i}.png")
    return root


# -- make_shards: the source folder ---------------------------------------------------------------
def test_dangling_links_and_symlink_loops_are_skipped_and_reported_once(tmp_path):
    src = _images(tmp_path / "src")
    (src / "a" / "loop").symlink_to("..")                     # a link to an ancestor: a loop
    (src / "a" / "b_again").symlink_to("../b")                # a second way into b
    (src / "b" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # dangling
    r = run_script("make_shards.py", "--source", src, "--out", tmp_path / "out", "--no-progress", timeout=60)
    assert "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()
    loops = [ln for ln in err if "symlinked folder" in ln]
    assert len(loops) == 1 and loops[0].startswith("warning: ") and "2 symlinked folder(s)" in loops[0]
    assert "a/loop -> " in loops[0]  # the example is the true loop
    summary = [ln for ln in err if ln.startswith("warning: skipped")]
    assert len(summary) == 1 and "skipped 1 of 5 images" in summary[0] and "b/gone.png" in summary[0]
    assert "skipped: dangling_link: 1" in r.stdout
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["count"] == 4 and meta["classes"] == ["a", "b"] and meta["skipped"] == {"dangling_link": 1}


def test_a_symlinked_folder_outside_the_source_is_followed(tmp_path):
    src = _images(tmp_path / "src")
    _images(tmp_path / "elsewhere", 2)
    (src / "b" / "more").symlink_to(tmp_path / "elsewhere" / "a")
    meta = pack(src, tmp_path / "out", progress=False, labels="none")
    assert meta["count"] == 5 and meta["skipped"] == {}


def test_unreadable_files_are_skipped_and_counted(tmp_path, monkeypatch, capsys):
    src = _images(tmp_path / "src")
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: (_ for _ in ()).throw(PermissionError(
        errno.EACCES, "Permission denied", str(p))) if p.name == "x1.png" else real(p))
    meta = pack(src, tmp_path / "out", resolution=16, progress=False)
    assert meta["count"] == 3 and meta["skipped"] == {"unreadable": 1}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "b/x1.png (unreadable)" in err[0]


def _truncated_zip(p: Path, src: Path) -> None:
    with zipfile.ZipFile(p, "w") as z:
        for f in sorted(src.rglob("*.png")):
            z.write(f, f.relative_to(src))
    p.write_bytes(p.read_bytes()[:-40])  # the central directory is cut


def _truncated_npz(p: Path) -> None:
    np.savez_compressed(p, images=np.random.default_rng(0).integers(0, 255, (64, 16, 16), dtype=np.uint8))
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@pytest.mark.parametrize("case, expect", [
    ("missing", "no such file or folder"), ("text", "is not a kind of source"),
    ("tar", "is a tar archive (extract it"), ("zip", "cannot read the zip archive"),
    ("npz", "cannot load the array"), ("npy", "cannot load the array"), ("out_is_file", "is a file"),
    ("labels_binary", "not valid JSON")])
def test_bad_sources_and_outputs_are_one_line(tmp_path, capsys, case, expect):
    src = _images(tmp_path / "src")
    out, source = tmp_path / "out", tmp_path / case
    if case == "text":
        source.write_text("hello")
    elif case == "tar":
        source = tmp_path / "photos.tar"
        with tarfile.open(source, "w") as tf:
            tf.add(src, arcname="src")
    elif case == "zip":
        source = tmp_path / "photos.zip"
        _truncated_zip(source, src)
    elif case == "npz":
        source = tmp_path / "d.npz"
        _truncated_npz(source)
    elif case == "npy":
        source = tmp_path / "d.npy"
        np.save(source, np.zeros((8, 16, 16), np.uint8))
        source.write_bytes(source.read_bytes()[:100])
    elif case == "out_is_file":
        source, out = src, tmp_path / "file"
        out.write_text("x")
    elif case == "labels_binary":
        source = src
        (src / "labels.json").write_bytes(b"\xff\xfe\x00garbage")
    rc = _launch("make_shards").main(["--source", str(source), "--out", str(out), "--no-progress"])
    line = _one_line_error(capsys)
    assert rc == 2 and expect in line, line
    assert str(source if case != "out_is_file" else out) in line


def test_a_write_failure_leaves_no_partial_shard_and_rerunning_resumes(tmp_path, capsys, monkeypatch):
    src = _images(tmp_path / "src", 9)
    out = tmp_path / "out"
    real_add, calls = pack_mod._ShardWriter.add, []

    def add(self, members):  # the disk fills up inside the third shard
        calls.append(1)
        if len(calls) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, members)
    monkeypatch.setattr(pack_mod._ShardWriter, "add", add)
    argv = ["--source", str(src), "--out", str(out), "--no-progress", "--shard-samples", "2", "--resolution", "16"]
    rc = _launch("make_shards").main(argv)
    line = _one_line_error(capsys)
    assert rc == 2 and f"--out {out}: cannot write" in line and "No space left on device" in line
    meta = json.loads((out / "dataset.json").read_text())
    assert not meta["complete"] and sorted(p.name for p in out.iterdir()) == sorted(
        ["dataset.json"] + [s["name"] for s in meta["shards"]])  # no partial shard, no temporaries
    assert len(meta["shards"]) == 2
    monkeypatch.setattr(pack_mod._ShardWriter, "add", real_add)
    assert _launch("make_shards").main(argv) == 0
    assert "resuming after 2 verified shards" in capsys.readouterr().out
    assert json.loads((out / "dataset.json").read_text())["count"] == 9


def test_an_unwritable_output_folder_is_one_line(tmp_path, capsys, monkeypatch):
    src = _images(tmp_path / "src")
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0:  # a real read-only folder where permissions apply
        out.chmod(0o555)
    else:  # root writes anywhere: fail the temporary file as a read-only folder would
        import hifigan.io

        def refuse(*a, dir=None, **kw):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        monkeypatch.setattr(hifigan.io.tempfile, "mkstemp", refuse)
    try:
        rc = _launch("make_shards").main(["--source", str(src), "--out", str(out), "--no-progress"])
    finally:
        out.chmod(0o755)
    line = _one_line_error(capsys)
    assert rc == 2 and f"--out {out}: cannot write" in line and "Permission denied" in line
    assert list(out.iterdir()) == []


# -- the shard stream -------------------------------------------------------------------------------
@pytest.fixture()
def cut_shards(tmp_path):
    """24 digits in 4 shards of 6; shard 2 is cut inside a member: (folder, its path)."""
    x = np.random.default_rng(3).integers(0, 255, (24, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "d.npy", x)
    meta = pack(str(tmp_path / "d.npy"), str(tmp_path / "s"), encoding="png", shard_samples=6, progress=False)
    cut = tmp_path / "s" / meta["shards"][2]["name"]
    raw = cut.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2 + 100])
    return tmp_path / "s", cut


@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_shard_is_reported_exactly_once(cut_shards, capfd, workers):
    """An endless stream over one damaged shard: reported when first met (it used to be counted only)."""
    out, cut = cut_shards
    st = ShardStream(ShardSet.open(str(out)), batch_size=4, workers=workers, seed=0, shuffle_buffer=5)
    seen = 0
    for b in make_loader(st):  # three epochs, then stop as training does
        seen += len(b["img"])
        if seen >= 3 * 24 - 8:
            break
    assert b["skipped"].get("truncated", 0) >= 2  # the counts (Data/skipped/truncated) as before
    err = capfd.readouterr().err.splitlines()
    lines = [ln for ln in err if str(cut) in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"warning: data: shard {cut}: truncated or damaged")
    assert "of 6 samples); skipped the rest" in lines[0]
    assert not [ln for ln in err if "Traceback" in ln]


def test_a_damaged_dataset_json_is_one_line(cut_shards, tmp_path):
    out, _ = cut_shards
    meta = json.loads((out / "dataset.json").read_text())
    bad = tmp_path / "bin.json"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    with pytest.raises(UserError, match="not UTF-8 text") as e:
        ShardSet.open(str(bad))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    for entry in ({"name": "pipe:touch x", "count": 6}, {"name": "../x.tar", "count": 6}, ["x.tar", 6]):
        (out / "dataset.json").write_text(json.dumps(dict(meta, shards=[entry])))
        with pytest.raises(UserError, match=r"shards\[0\] must be"):  # a dataset.json cannot name a command
            ShardSet.open(str(out))


# -- pipe: shards are code ----------------------------------------------------------------------------
def test_pipe_shards_are_refused_without_allow_pipe(tmp_path, capsys):
    rc = _launch("train").main(["configs/mnist_dcgan.yaml", f"data.shards=pipe:touch {tmp_path}/pwned",
                                f"run_dir={tmp_path}/run"])
    line = _one_line_error(capsys)
    assert rc == 2 and line.startswith("error: command line: data.shards: 'pipe:' runs a shell command")
    assert line.endswith("set data.allow_pipe=true only for recipes you trust")
    with pytest.raises(UserError, match="allow_pipe"):  # the library refuses too, e.g. in a list of patterns
        ShardSet.open(["/x/a.tar", "pipe:cat /x/b.tar"])
    assert not (tmp_path / "pwned").exists()


def test_dry_run_never_runs_the_pipe_command(cut_shards, tmp_path):
    """A valid pipe: setup (allowed, counts in data.meta): --dry-run builds the feed and runs nothing."""
    out, _ = cut_shards
    target = tmp_path / "pwned"
    r = subprocess.run([PY, str(ROOT / "launch" / "train.py"), "configs/mnist_dcgan.yaml",
                        f"data.shards=pipe:touch {target} && cat {out}/s-000000.tar", "data.allow_pipe=true",
                        f"data.meta={out}/dataset.json", "--dry-run", f"run_dir={tmp_path}/run"],
                       cwd=ROOT, env=env1(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "phases:" in r.stdout and not target.exists()
    with pytest.raises(UserError, match="'pipe:' shards need the dataset.json"):  # never run just to count
        ShardSet.open(f"pipe:touch {target}", allow_pipe=True)
    assert not target.exists()


def test_webdataset_secure_mode_refuses_pipe_in_one_line(cut_shards, monkeypatch):
    out, cut = cut_shards
    monkeypatch.setenv("WDS_SECURE", "1")
    from hifigan.config import DataConfig
    from hifigan.data.shards import ShardFeed
    cfg = DataConfig(shards=f"pipe:cat {cut}", meta=str(out / "dataset.json"), allow_pipe=True, resolution=8)
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        rc = run_main(ShardFeed, cfg, 0, 0, 1, 4, (1, 8, 8), 0, "cpu")
    line = _one_line_error(buf.getvalue())
    assert rc == 2 and "refused in webdataset's secure mode (WDS_SECURE=1)" in line
    import webdataset.utils  # a reader that meets webdataset's own refusal says so in one line too
    monkeypatch.setattr(webdataset.utils, "enforce_security", True)
    with pytest.raises(UserError, match="webdataset refused to open") as e:
        next(iter_samples(f"pipe:cat {cut}"))
    assert "\n" not in str(e.value)
    monkeypatch.setenv("WDS_SECURE", "yes")
    with pytest.raises(UserError, match="WDS_SECURE='yes'"):
        ShardSet.open(str(out))


def test_a_failing_pipe_command_is_a_damaged_shard_not_a_crash(cut_shards, capfd):
    out, _ = cut_shards
    urls = [f"pipe:cat {out}/s-00000{i}.tar" for i in (0, 1, 3)] + [f"pipe:cat {out}/missing/s-000002.tar"]
    shards = ShardSet.open(urls, meta=str(out / "dataset.json"), allow_pipe=True)
    st = ShardStream(shards, batch_size=4, epochs=1, seed=0, shuffle_buffer=5)
    got = sum(len(b["img"]) for b in make_loader(st))
    err = capfd.readouterr().err
    assert got == 18 and "Traceback" not in err and "Exception ignored" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("warning: data: shard ")]
    assert len(lines) == 1 and "(read 0 of 6" in lines[0]
    assert "truncated or damaged: cannot open: the command exited with status 1" in lines[0]


def test_damaged_mnist_idx_files_are_one_line(tmp_path):
    from hifigan.data.builtin import load_mnist
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"garbage")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00")
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz: cannot read IDX file") as e:
        load_mnist(str(tmp_path))
    assert "\n" not in str(e.value)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(UserError, match="truncated IDX header"):
        load_mnist(str(tmp_path))
