"""SPADE end to end on the in-memory digits and their class-labelled stroke masks: every SPADE recipe
(and the encoder variant) trains and resumes bit for bit in one process, the tiny recipe in two gloo
processes; TensorBoard shows map | real | synthesized; generate.py synthesizes from a label-map PNG
(with a style image for the encoder variant) and refuses what it cannot use in one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, assert_same_checkpoints, latest_ckpt, run_script, train_two_processes
from hifigan.config import load_config
from hifigan.train.trainer import Trainer
from test_recipes import shrink

RECIPES = ["mnist_spade.yaml", "spade_ade20k.yaml", "spade_cityscapes.yaml"]
VAE = ["G.use_vae=true", "E.arch=spade_encoder", "phases=[{name: Dmain, nets: [D]}, {name: Gmain, nets: [G, E]}]",
       "optim.E={name: adam, lr: 1.0e-4, betas: [0.0, 0.9]}"]


def _overrides(name, run, vae=False):
    o = shrink(name, run)
    if vae:  # the E section first (shrink sizes it), then the rest
        o = VAE + shrink(name, run) + ["E.channels=1", "E.ndf=4", "E.z_dim=16", "E.input_size=32"]
    return o


def _same(a, b, nets=("G", "D", "G_ema")):
    assert_same_checkpoints(a, b, nets)


def test_every_spade_recipe_is_listed():
    names = {p.name for p in (ROOT / "configs").glob("*.yaml") if load_config(p).G.name == "spade"}
    assert names == set(RECIPES)


# spade_cityscapes resumes from packed Cityscapes shards with instance maps (the last test)
@pytest.mark.parametrize("name,vae", [("mnist_spade.yaml", False), ("spade_ade20k.yaml", False),
                                      ("mnist_spade.yaml", True)])
def test_recipe_resumes_bit_identically_in_one_process(name, vae, tmp_path):
    torch.set_num_threads(1)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    Trainer(load_config(ROOT / "configs" / name, _overrides(name, straight, vae))).run()
    Trainer(load_config(ROOT / "configs" / name, _overrides(name, resumed, vae) + ["train.total_kimg=0.024"])).run()
    assert latest_ckpt(resumed).name != latest_ckpt(straight).name
    Trainer(load_config(ROOT / "configs" / name, _overrides(name, resumed, vae))).run()
    _same(straight, resumed, ("G", "D", "G_ema") + (("E",) if vae else ()))


def test_tiny_recipe_resumes_bit_identically_on_two_processes(tmp_path):
    name = "mnist_spade.yaml"

    def train(run, *extra):
        train_two_processes(ROOT / "configs" / name, *shrink(name, run), *extra)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(straight)
    train(resumed, "train.total_kimg=0.024")
    train(resumed)
    _same(straight, resumed)
    assert torch.load(latest_ckpt(straight) / "state.pt", weights_only=True)["world_size"] == 2


def _map_png(path, digit=3, size=32):
    """A label-map PNG: a bar of label digit + 1 on background 0."""
    ids = np.zeros((size, size), dtype=np.uint8)
    ids[8:24, 14:18] = digit + 1
    Image.fromarray(ids, mode="L").save(path)
    return ids


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny recipe and its encoder variant, trained a few steps."""
    root = tmp_path_factory.mktemp("spade")
    plain, vae = root / "plain", root / "vae"
    run_script("train.py", ROOT / "configs" / "mnist_spade.yaml", *shrink("mnist_spade.yaml", plain))
    run_script("train.py", ROOT / "configs" / "mnist_spade.yaml", *_overrides("mnist_spade.yaml", vae, vae=True))
    return plain, vae


def test_tensorboard_shows_map_real_and_synthesized(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    plain, _ = trained
    ev = EventAccumulator(str(plain / "tensorboard"), size_guidance={"images": 0})
    ev.Reload()
    assert "Samples/labelmap_real_G_ema" in ev.Tags()["images"]
    grid = np.array(Image.open(sorted((plain / "samples").glob("fakes*.png"))[-1]))
    assert grid.ndim == 3 and grid.shape[-1] == 3  # colour map beside gray digits: an RGB grid


def test_generate_synthesizes_from_a_label_map_png(trained, tmp_path):
    plain, vae = trained
    ids = _map_png(tmp_path / "map.png")
    out = tmp_path / "out"
    run_script("generate.py", plain, "--labelmap", tmp_path / "map.png", "--seeds", "0-2", "--out", out)
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (3, 32, 32, 1)
    assert (images == images[0]).all()  # without the encoder G is a function of the map alone
    colour = np.array(Image.open(out / "labelmap.png"))
    assert colour.shape == (32, 32, 3) and (colour[ids == 0] == 0).all() and (colour[ids == 4] != 0).any(1).all()
    assert (out / "panel.png").is_file() and (out / "seed0002.png").is_file()
    # with the encoder: seeds draw z (multimodal); a style image sets z from its posterior
    multi = tmp_path / "multi"
    run_script("generate.py", vae, "--labelmap", tmp_path / "map.png", "--seeds", "0-2", "--out", multi)
    m = np.load(multi / "samples.npz")["images"]
    assert not (m == m[0]).all()
    style = tmp_path / "style.png"
    Image.fromarray((np.random.RandomState(0).rand(32, 32) * 255).astype(np.uint8)).save(style)
    styled = tmp_path / "styled"
    run_script("generate.py", vae, "--labelmap", tmp_path / "map.png", "--style", style, "--seeds", "0-1",
               "--out", styled)
    assert np.load(styled / "samples.npz")["images"].shape == (2, 32, 32, 1)


def test_generate_refuses_what_it_cannot_use_in_one_line(trained, tmp_path):
    plain, _ = trained
    _map_png(tmp_path / "map.png")
    bad = np.zeros((32, 32), dtype=np.uint8)
    bad[0, 0] = 11  # the recipe knows labels 0..10
    Image.fromarray(bad, mode="L").save(tmp_path / "bad.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    cases = [
        (["--labelmap", tmp_path / "bad.png"], "label id 11"),
        (["--labelmap", tmp_path / "junk.png"], "not a readable PNG"),
        (["--labelmap", tmp_path / "missing.png"], "no such label map"),
        ([], "pass --labelmap"),
        (["--labelmap", tmp_path / "map.png", "--style", tmp_path / "map.png"], "without the image encoder"),
        (["--labelmap", tmp_path / "map.png", "--trunc", "0.5"], "--trunc"),
        (["--labelmap", tmp_path / "map.png", "--instance", tmp_path / "map.png"], "no instance maps"),
    ]
    for args, msg in cases:
        r = run_script("generate.py", plain, *args, "--out", tmp_path / "o", check=False)
        assert r.returncode == 2, (args, r.stderr[-500:])
        assert msg in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_labelmap_flag_on_another_family_is_one_line(tmp_path):
    run = tmp_path / "dcgan"
    run_script("train.py", ROOT / "configs" / "mnist_dcgan.yaml", *shrink("mnist_dcgan.yaml", run))
    _map_png(tmp_path / "map.png")
    r = run_script("generate.py", run, "--labelmap", tmp_path / "map.png", "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and "does not synthesize from label maps" in r.stderr and "Traceback" not in r.stderr


def test_spade_recipe_on_unpaired_data_or_wrong_label_count_is_one_line(tmp_path):
    for extra, msg in [(["data.source=mnist"], "takes label maps"), (["G.label_nc=12", "D.label_nc=12"], "label_nc=12"),
                       (["D.label_nc=12"], "D.label_nc=12")]:
        r = run_script("train.py", ROOT / "configs" / "mnist_spade.yaml", *shrink("mnist_spade.yaml", tmp_path / "r"),
                       *extra, check=False)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr[-400:])


def test_cityscapes_recipe_trains_from_paired_shards_with_instance_maps_and_resumes(tmp_path):
    """The Cityscapes recipe at 64x32 on a tiny packed Cityscapes tree (label ids, 16-bit instance ids):
    G and D see one-hot labels plus instance edges; stopping and resuming changes nothing."""
    from hifigan.data.pack import pack
    from test_paired_data import _cityscapes
    torch.set_num_threads(1)
    _cityscapes(tmp_path / "root")
    pack(tmp_path / "root", tmp_path / "shards", layout="cityscapes", resolution=64, aspect_ratio=2.0,
         encoding="png", progress=False)
    name = "spade_cityscapes.yaml"

    def overrides(run):
        return shrink(name, run) + [f"data.shards={tmp_path / 'shards'}", "data.workers=0", "data.resolution=64",
                                    "data.aspect_ratio=2", "data.shuffle_buffer=4"] + [
            f"{n}.{k}" for n in ("G", "D") for k in ("width=64", "aspect_ratio=2", "channels=3", "label_nc=35",
                                                     "instance=true")]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    tr = Trainer(load_config(ROOT / "configs" / name, overrides(straight)))
    assert tr.nets["G"].img_shape == (3, 32, 64)
    tr.run()
    img, c = tr._last_reals[0]
    assert img.shape == (8, 3, 32, 64) and c.shape == (8, 2, 32, 64) and c.dtype == torch.int64
    Trainer(load_config(ROOT / "configs" / name, overrides(resumed) + ["train.total_kimg=0.024"])).run()
    Trainer(load_config(ROOT / "configs" / name, overrides(resumed))).run()
    _same(straight, resumed)
