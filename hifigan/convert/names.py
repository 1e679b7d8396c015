"""Renaming tables: a list of (reference pattern, hifigan pattern) pairs, usable in both directions.

A pattern is a dotted name with `{field}` placeholders (`mapping.fc{i}.{p}`); a field matches one
name component, and the same fields fill the other side. The first pair that matches wins.
"""
from __future__ import annotations

import re


def _regex(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", pattern)
    body = "".join(f"(?P<{p[1:-1]}>[^.]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(body + r"\Z")


class Renamer:
    def __init__(self, pairs):
        self.pairs = [(theirs, ours, _regex(theirs), _regex(ours)) for theirs, ours in pairs]

    def ours(self, name: str) -> str | None:
        """The hifigan name of reference tensor `name`, or None when no pair matches."""
        return self._rename(name, mine=False)

    def theirs(self, name: str) -> str | None:
        """The reference name of hifigan tensor `name` (the inverse; for tests and exports)."""
        return self._rename(name, mine=True)

    def _rename(self, name: str, mine: bool) -> str | None:
        for theirs, ours, rt, ro in self.pairs:
            m = (ro if mine else rt).match(name)
            if m:
                return (theirs if mine else ours).format(**m.groupdict())
        return None
