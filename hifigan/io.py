"""Atomic file writes: the one helper every hifigan module writes its files through.

A file is written under a temporary name in its own folder (`.NAME.XXXXXXXX.tmp`), flushed to disk
(fsync), given the usual permissions (0666 minus the umask; the temporary was private) and renamed
over its final name with os.replace. A reader sees the old file or the new one, never half of one;
a write that fails removes its temporary, and one killed outright leaves only a hidden `*.tmp`
beside the file (`temporary_target` tells whose).

    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))   # anything that writes to a path
    with AtomicFile(path) as f:                                      # a stream written piece by piece
        f.write(...)
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable

_TEMPORARY_RE = re.compile(r"^\.(?P<target>.+)\.[^.]+\.tmp$")


def temporary_target(name: str) -> str | None:
    """The final name whose temporary `name` is (".x.json.k2j4_a.tmp" -> "x.json"), else None."""
    m = _TEMPORARY_RE.match(name)
    return m.group("target") if m else None


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _publish(tmp: Path, path: Path) -> None:
    """fsync `tmp`, give it the permissions a plain open() would, and rename it over `path`."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
    os.replace(tmp, path)


def atomic_write(path, write: Callable[[str], object]) -> None:
    """Write `path` through `write(tmp)`, which writes the whole file at the temporary path `tmp`;
    then fsync it and rename it over `path` (parent folders are created)."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        write(str(tmp))
        _publish(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class AtomicFile:
    """An open file (`.file`) under a temporary name beside `path`: `commit()` publishes it at `path`
    exactly as `atomic_write` does, `discard()` deletes it. As a context manager it commits on
    success and discards on an exception."""

    def __init__(self, path, mode: str = "wb"):
        self.path = Path(path)
        self.tmp = _temporary(self.path)
        self.file = open(self.tmp, mode)

    def write(self, data):
        return self.file.write(data)

    def commit(self) -> None:
        self.file.close()
        try:
            _publish(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
