"""User-facing errors: a one-line message that says what is wrong and how to fix it.

Entry scripts run through `run_main`: a `UserError` prints its message on stderr and exits with
code 2; so do the errors the environment causes rather than hifigan (`OSError`: a full disk, a
file-size limit, a read-only or missing folder; `UnicodeError`: a binary file where text was
expected), each as one line naming the file. Every other exception is a bug in hifigan and keeps
its traceback.
"""
from __future__ import annotations

import errno

_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space and rerun (a training run resumes from its latest checkpoint)",
    errno.EDQUOT: "the disk quota is exhausted: free space and rerun",
    errno.EFBIG: "a file-size limit was reached (ulimit -f): raise it and rerun",
    errno.EROFS: "the file system is read-only: choose a writable folder (e.g. run_dir=...)",
    errno.EACCES: "choose a folder you can write (e.g. run_dir=...) or fix its permissions",
    errno.EPERM: "choose another folder or fix its permissions",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "a folder where a file was expected: check the path",
    errno.ELOOP: "a symbolic link loop: fix the links",
    errno.EIO: "check the disk",
}


class UserError(Exception):
    """Bad input from the user (config, paths, data, checkpoints). The message is one line."""

    exit_code = 2


def one_line(text, limit: int = 300) -> str:
    """`text` as one bounded line: its first non-empty line (or a placeholder), cut at `limit` chars."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else "(no details)"
    return line if len(line) <= limit else line[:limit - 3] + "..."


def describe_os_error(e: OSError) -> str:
    """'PATH: what happened; what to do' for an OSError."""
    where = e.filename if e.filename is not None else "hifigan"
    what = e.strerror or one_line(e)
    hint = _OS_HINTS.get(e.errno, "check the path, the free space and the permissions")
    return one_line(f"{where}: {what}; {hint}", 500)


def describe(e: BaseException) -> str | None:
    """The one-line message of an error caused by input or environment, or None for a bug."""
    if isinstance(e, UserError):
        return one_line(e, 1000)
    if isinstance(e, OSError):
        return describe_os_error(e)
    if isinstance(e, UnicodeError):
        return one_line(f"a file is not valid UTF-8 text ({e}); give a text file")
    return None


def run_main(fn, *args, **kwargs) -> int:
    """Run an entry point: bad input or environment -> one line on stderr and exit code 2; else 0."""
    import sys
    import threading
    default_hook = threading.excepthook

    def thread_hook(args):  # a writer thread's OSError (TensorBoard's) is re-raised in the main thread
        if not issubclass(args.exc_type, (OSError, UserError)):
            default_hook(args)
    threading.excepthook = thread_hook
    try:
        fn(*args, **kwargs)
    except (UserError, OSError, UnicodeError) as e:
        try:
            print(f"error: {describe(e)}", file=sys.stderr, flush=True)
        except OSError:
            pass
        return UserError.exit_code
    finally:
        threading.excepthook = default_hook
    return 0
