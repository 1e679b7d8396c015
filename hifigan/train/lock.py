"""One trainer per run directory: an advisory lock held for the life of a run.

`RUN_DIR/.lock` is locked with flock(2) (exclusive, non-blocking) by the run's main process and
holds a line naming the holder (pid, host, start time). The operating system drops the lock when
the process ends in any way, kill -9 included, so a lock is never stale: the file may stay, but a
rerun takes it. A second trainer on the same run directory fails at once with one line naming
the holder. (flock works across processes of one machine and on local file systems; on network
file systems it depends on the server.)
"""
from __future__ import annotations

import datetime
import fcntl
import os
import socket
from pathlib import Path

from hifigan.errors import UserError, one_line

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = one_line(os.pread(fd, 300, 0).decode("utf-8", "replace"), 200)
            os.close(fd)
            raise UserError(f"{self.path.parent}: another trainer is using this run_dir ({holder}); wait for it "
                            f"to finish, stop it, or choose another run_dir") from None
        except BaseException:
            os.close(fd)
            raise
        started = datetime.datetime.now().isoformat(timespec="seconds")
        info = f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        except OSError:
            pass  # the lock is what matters; the holder's description is a courtesy
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
