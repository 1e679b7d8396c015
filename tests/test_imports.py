"""The import graph of hifigan: no cycles, layers import one way, every module imports.

Edges come from the source (ast), not from running it: every `import` and `from ... import`, at module
level and inside functions, relative ones resolved, `from hifigan import x` pointing at submodule x
when there is one. kernels/ is installed as hifigan.kernels and is part of the graph under that name.
The registries import their packages by string (importlib), which is not an edge.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"hifigan": ROOT / "hifigan", "hifigan.kernels": ROOT / "kernels"}  # package -> folder


def _modules() -> dict[str, Path]:
    """Module name -> file, for every .py under hifigan/ and kernels/ (as hifigan.kernels)."""
    mods = {}
    for package, folder in SOURCES.items():
        for dirpath, dirnames, filenames in os.walk(folder):  # does not follow symlinks
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            rel = Path(dirpath).relative_to(folder).parts
            for f in filenames:
                if not f.endswith(".py"):
                    continue
                parts = [package, *rel] + ([] if f == "__init__.py" else [f[:-3]])
                mods[".".join(parts)] = Path(dirpath) / f
    return mods


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _known(name: str) -> str | None:
    """The longest prefix of a dotted name that is one of our modules (None: not ours)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULES:
            return ".".join(parts[:n])
    return None


def imports_of(name: str) -> set[str]:
    """Every module of ours that `name` imports anywhere in its source."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    package = name if _is_package(name) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]
        else:
            continue
        out.update(t for t in map(_known, targets) if t is not None and t != name)
    return out


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state = {}  # name -> 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    assert "hifigan.data.memory" in GRAPH["hifigan.metrics.mnist_fd"]  # inside __call__
    assert {"hifigan.kernels.conv2d", "hifigan.kernels.upfirdn2d"} <= GRAPH["hifigan.kernels.modconv.reference"]
    assert "hifigan.kernels.dispatch" in GRAPH["hifigan.kernels.modconv"]  # `from .. import dispatch`
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# Each layer may not import the ones listed (prefixes of module names).
LAYERS = {
    "hifigan.nn": ["hifigan.models", "hifigan.objectives", "hifigan.train", "hifigan.sampling", "hifigan.metrics",
                   "hifigan.data"],
    "hifigan.models": ["hifigan.objectives", "hifigan.train", "hifigan.sampling", "hifigan.metrics"],
    "hifigan.objectives": ["hifigan.train", "hifigan.sampling", "hifigan.metrics", "hifigan.data",
                           "hifigan.kernels"],
}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layers_import_one_way(layer):
    bad = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if _under(m, layer)
                 for t in targets if any(_under(t, p) for p in LAYERS[layer]))
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_entry_scripts_or_benchmarks():
    bad = []
    for name, file in MODULES.items():
        for node in ast.walk(ast.parse(file.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{name} imports {n}" for n in names if n.split(".")[0] in ("launch", "benchmarks")]
    assert not bad, "\n".join(bad)


def test_every_module_imports():
    code = (
        "import importlib, pkgutil, sys, traceback\n"
        "import hifigan\n"
        "bad = []\n"
        "for m in pkgutil.walk_packages(hifigan.__path__, 'hifigan.', onerror=bad.append):\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except Exception:\n"
        "        bad.append(m.name + ': ' + traceback.format_exc().strip().splitlines()[-1])\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
