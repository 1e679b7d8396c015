"""Every BigGAN / BigGAN-deep / SAGAN recipe trains a few steps and resumes bit for bit, in one process
and (one recipe per family) in two gloo processes with cross-replica batch norm; generate.py's z
truncation and class rows on a trained checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_same_checkpoints, latest_ckpt, run_script, train_two_processes
from hifigan.config import load_config
from hifigan.train.trainer import Trainer
from test_recipes import shrink

FAMILY = ["biggan_cifar10.yaml", "biggan_deep_cifar10.yaml", "biggan_deep_imagenet128.yaml", "biggan_imagenet128.yaml",
          "mnist_biggan.yaml", "mnist_sagan.yaml", "sagan_cifar10.yaml", "sagan_imagenet128.yaml"]
TWO_PROCESS = ["biggan_imagenet128.yaml", "biggan_deep_imagenet128.yaml", "sagan_imagenet128.yaml"]


def _same(a, b):
    assert_same_checkpoints(a, b)


def test_every_family_recipe_is_listed():
    names = {p.name for p in (ROOT / "configs").glob("*.yaml")
             if load_config(p).G.name in ("biggan", "biggan_deep", "sagan")}
    assert names == set(FAMILY)


@pytest.mark.parametrize("name", FAMILY)
def test_recipe_resumes_bit_identically_in_one_process(name, tmp_path):
    torch.set_num_threads(1)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    Trainer(load_config(ROOT / "configs" / name, shrink(name, straight))).run()
    Trainer(load_config(ROOT / "configs" / name, shrink(name, resumed) + ["train.total_kimg=0.024"])).run()
    assert latest_ckpt(resumed).name != latest_ckpt(straight).name
    Trainer(load_config(ROOT / "configs" / name, shrink(name, resumed))).run()
    _same(straight, resumed)


@pytest.mark.parametrize("name", TWO_PROCESS)
def test_recipe_resumes_bit_identically_on_two_processes(name, tmp_path):
    def train(run, *extra):
        train_two_processes(ROOT / "configs" / name, *shrink(name, run), *extra)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(straight)
    train(resumed, "train.total_kimg=0.024")
    train(resumed)
    _same(straight, resumed)
    st = torch.load(latest_ckpt(straight) / "state.pt", weights_only=True)
    assert st["world_size"] == 2
    digests = st.get("ema_digests") or st.get("digests")
    assert digests is not None


def test_generate_truncates_z_and_writes_class_rows(tmp_path):
    run = tmp_path / "run"
    run_script("train.py", ROOT / "configs" / "mnist_biggan.yaml", *shrink("mnist_biggan.yaml", run))
    out = tmp_path / "out"
    run_script("generate.py", run, "--seeds", "0-19", "--out", out, "--trunc", "0.3")
    trunc = np.load(out / "samples.npz")["images"]
    full = tmp_path / "full"
    run_script("generate.py", run, "--seeds", "0-19", "--out", full)
    plain = np.load(full / "samples.npz")["images"]
    assert trunc.shape == plain.shape == (20, 32, 32, 1) and not np.array_equal(trunc, plain)
    seven = tmp_path / "seven"
    run_script("generate.py", run, "--seeds", "0-3", "--class", "7", "--out", seven)
    assert np.load(seven / "samples.npz")["images"].shape == (4, 32, 32, 1)
    # a walk between classes 1 and 7 in the shared class embedding, z of seed 0: its first frame is class 1's image
    walk = tmp_path / "walk"
    run_script("generate.py", run, "--seeds", "0", "--class", "1", "--out", walk, "--interp", "1,7", "--space",
               "class", "--frames-per-seed", "3", "--video", walk / "walk.gif")
    from PIL import Image
    with Image.open(walk / "walk.gif") as gif:
        assert gif.n_frames == 4
        gif.seek(0)
        first = np.asarray(gif.convert("L"), dtype=np.int16)
    own = np.load(walk / "samples.npz")["images"][0, :, :, 0].astype(np.int16)
    assert np.abs(first - own).max() <= 2
    r = run_script("generate.py", run, "--seeds", "0-3", "--trunc", "-1", "--out", tmp_path / "bad", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "threshold" in r.stderr
