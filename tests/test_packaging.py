"""A wheel of the checkout holds the whole library and works when installed (not only editable).

The wheel is built from a copy of the sources, so nothing (build/, *.egg-info) is written into the
checkout, and installed into a temporary folder that a fresh process, started outside the checkout,
imports hifigan from instead of the editable install.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sources() -> set[str]:
    """What the wheel must hold: every .py of hifigan/ and kernels/ (as hifigan/kernels/) and the CUDA sources."""
    files = {f"hifigan/{p.relative_to(ROOT / 'hifigan').as_posix()}" for p in (ROOT / "hifigan").rglob("*.py")}
    for pattern in ("*.py", "*/cuda/*.cu", "*/cuda/*.cpp"):
        files |= {f"hifigan/kernels/{p.relative_to(ROOT / 'kernels').as_posix()}"
                  for p in (ROOT / "kernels").rglob(pattern)}
    return {f for f in files if "__pycache__" not in f}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    src.mkdir()
    shutil.copy2(ROOT / "setup.py", src)
    for folder in ("hifigan", "kernels"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("hifigan-*.whl")
    return whl


@pytest.fixture(scope="module")
def site(wheel) -> Path:
    target = wheel.parent.parent / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                        str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return target


def test_the_wheel_holds_every_module_and_the_cuda_sources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not _sources() - names, sorted(_sources() - names)
    assert "hifigan/kernels/bias_act/cuda/bias_act.cu" in names
    assert not [n for n in names if n.split("/")[0] == "kernels"]  # never a top-level package `kernels`


INSTALLED = """
import importlib, json, pkgutil, sys, traceback
import torch
import hifigan, hifigan.kernels
bad = []
for m in pkgutil.walk_packages(hifigan.__path__, "hifigan.", onerror=bad.append):
    try:
        importlib.import_module(m.name)
    except Exception:
        bad.append(m.name + ": " + traceback.format_exc().strip().splitlines()[-1])
from hifigan.registry import GENERATORS
G = GENERATORS.build("stylegan2", {"z_dim": 8, "w_dim": 8, "resolution": 8, "channel_base": 64, "channel_max": 8,
                                   "mapping_layers": 2}).eval()
with torch.no_grad():
    img = G(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))
files = {name: m.__file__ for name, m in sys.modules.items() if name.split(".")[0] == "hifigan"}
print(json.dumps({"files": files, "bad": bad, "shape": list(img.shape), "finite": bool(torch.isfinite(img).all())}))
"""


def test_the_installed_wheel_imports_every_module_and_builds_a_generator(site):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", INSTALLED], cwd="/", env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # every hifigan module came from the wheel: none was filled in from the checkout's editable install
    elsewhere = {name: f for name, f in out["files"].items() if not Path(f).resolve().is_relative_to(site.resolve())}
    assert not elsewhere, elsewhere
    assert {"hifigan", "hifigan.kernels", "hifigan.kernels.conv2d", "hifigan.models.stylegan2"} <= set(out["files"])
    assert out["bad"] == []
    assert out["shape"] == [2, 3, 8, 8] and out["finite"]
