"""hifigan.io: a file is replaced whole or not at all, with the usual permissions, and leaves no temporary."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hifigan.io import AtomicFile, atomic_write, temporary_target


def test_atomic_write_replaces_the_file_with_plain_permissions(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write(path, lambda tmp: Path(tmp).write_text("one"))
    atomic_write(path, lambda tmp: Path(tmp).write_text("two"))
    assert path.read_text() == "two" and os.listdir(path.parent) == ["a.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def half(tmp):
        Path(tmp).write_text("ne")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(path, half)
    with pytest.raises(RuntimeError), AtomicFile(path) as f:
        f.write(b"ne")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_atomic_file_streams_then_publishes(tmp_path):
    path = tmp_path / "a.bin"
    f = AtomicFile(path)
    f.write(b"ab")
    f.file.write(b"cd")
    assert not path.exists() and temporary_target(f.tmp.name) == "a.bin"
    f.commit()
    assert path.read_bytes() == b"abcd" and os.listdir(tmp_path) == ["a.bin"]


def test_temporary_target_names_only_hidden_temporaries():
    assert temporary_target(".dataset.json.k2j4_a.tmp") == "dataset.json"
    assert temporary_target(".set-000003.tar.x8fq0.tmp") == "set-000003.tar"
    assert temporary_target("dataset.json.tmp") is None
    assert temporary_target("a.txt") is None


def test_pack_resume_removes_a_killed_writers_temporaries(tmp_path):
    import numpy as np
    from hifigan.data.pack import pack
    images = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    out = tmp_path / "set"
    kw = dict(resolution=8, shard_samples=4, progress=False, encoding="png")
    full = pack(tmp_path / "x.npy", out, **kw)
    (out / full["shards"][2]["name"]).unlink()  # killed while writing shard 2 (and rewriting dataset.json)
    (out / f".{full['shards'][2]['name']}.abc123.tmp").write_bytes(b"partial")
    (out / ".dataset.json.def456.tmp").write_text("{")
    (out / ".notes.txt.ghi789.tmp").write_text("someone else's")
    assert pack(tmp_path / "x.npy", out, **kw) == full
    assert sorted(p.name for p in out.glob(".*.tmp")) == [".notes.txt.ghi789.tmp"]
