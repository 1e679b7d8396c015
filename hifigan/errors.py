"""User-facing errors: a one-line message that says what is wrong and how to fix it.

Entry scripts catch `UserError`, print its message on stderr and exit with code 2; every
other exception is a bug in hifigan and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user (config, paths, data, checkpoints). The message is one line."""

    exit_code = 2


def run_main(fn, *args, **kwargs) -> int:
    """Run an entry point: UserError -> one line on stderr and exit code 2; else fn's result (0)."""
    import sys
    try:
        fn(*args, **kwargs)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return UserError.exit_code
    return 0
