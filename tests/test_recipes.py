"""Every recipe in configs/ loads, builds and trains a few steps at a tiny size on the CPU, and its
checkpoint rebuilds in a fresh process; style-based checkpoints sample with truncation, mixing
grids and interpolation videos through launch/generate.py."""

import numpy as np
import pytest
import torch

from hifigan.config import load_config
from hifigan.registry import NETWORKS
from hifigan import checkpoint
from hifigan.train.trainer import Trainer
from conftest import ROOT, latest_ckpt, run_script

RECIPES = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
HIGH_RES = ["progan_celebahq.yaml", "progan_mnist.yaml", "stylegan1_ffhq.yaml", "stylegan1_mnist.yaml",
            "stylegan2_ffhq.yaml", "stylegan2_ffhq256.yaml", "stylegan2_ffhq512.yaml", "stylegan2_mnist.yaml"]


def shrink(name: str, run_dir) -> list[str]:
    """Overrides that turn a recipe into a seconds-long CPU run on the in-memory MNIST digits."""
    o = [f"run_dir={run_dir}", "log.progress=false", "log.grid_size=4", "train.threads=1", "train.batch_size=8",
         "train.batch_gpu=null", "train.total_kimg=0.048", "log.every_kimg=0.016", "log.image_every_kimg=1",
         "checkpoint.every_kimg=0.024", "train.ema_bn_batches=1", "data.shards=null", "data.source=mnist",
         "train.deterministic=true"]
    cfg = load_config(ROOT / "configs" / name)
    arch = cfg.G.name
    if arch in ("progan", "stylegan1", "stylegan2"):
        o += ["data.resolution=16", "G.resolution=16", "D.resolution=16", "G.channels=1", "D.channels=1",
              "G.channel_base=128", "G.channel_max=16", "D.channel_base=128", "D.channel_max=16", "G.z_dim=16"]
        if arch != "progan":
            o += ["G.w_dim=16", "G.mapping_layers=2"]
    elif arch in ("biggan", "biggan_deep", "sagan"):  # BigGAN's 32x32 table at ch 2, attention at 16
        o += ["data.resolution=32", "G.resolution=32", "D.resolution=32", "G.channels=1", "D.channels=1",
              "G.ch=2", "D.ch=2", "G.num_classes=10", "D.num_classes=10", "G.attention=[16]", "D.attention=[16]",
              "G.dim_z=16", "train.ema_start_kimg=0.016", "train.batch_gpu=null"]
        if arch != "sagan":
            o += ["G.shared_dim=8"]
        if cfg.G.cfg.widths:  # the tiny recipes' own width pyramid stays, at ch 4 (attention needs 8 channels)
            o += ["G.ch=4", "D.ch=4"]
    elif arch == "lapgan":  # the recipe's pyramid (levels, resolution) at a few channels; every level trains
        o += ["data.resolution=32", "G.channels=1", "D.channels=1", "G.z_dim=8", "G.base_hidden=[16,8]",
              "D.base_hidden=[8,16]", f"G.widths={[4] * (cfg.G.cfg.levels - 1)}",
              f"D.widths={[4] * (cfg.G.cfg.levels - 1)}", "objective.level_kimg=0.016"]
    elif arch == "spade":  # the in-memory digits with their class-labelled stroke masks, at a few channels
        o[o.index("data.source=mnist")] = "data.source=mnist_labelmaps"
        o += ["data.resolution=32", "data.aspect_ratio=1", "objective.lambda_vgg=0", "train.ema_bn_batches=1"]
        o += [f"{n}.{k}" for n in ("G", "D") for k in ("width=32", "aspect_ratio=1", "channels=1", "label_nc=11",
                                                       "instance=false")]
        o += ["G.ngf=4", "G.spade_hidden=8", "G.z_dim=16", "D.ndf=4", "D.n_layers=2"]
        if cfg.E is not None:
            o += ["E.channels=1", "E.ndf=4", "E.z_dim=16", "E.input_size=32"]
    elif arch == "dcgan":  # and every other network the recipe names (D, Q, C, E)
        o += [f"{n}.width=8" for n in ("G", "D", "Q", "C", "E") if getattr(cfg, n) is not None]
    else:
        o += ["G.hidden=[32,64]"] + [f"{n}.hidden=[64,32]" for n in ("D", "Q", "C") if getattr(cfg, n) is not None]
    if cfg.progressive is not None:
        o += ["progressive.start_resolution=4", "progressive.stable_kimg=0.008", "progressive.fade_kimg=0.008",
              "progressive.batch_size={}", "progressive.batch_gpu={}"]
    return o


def test_every_high_resolution_recipe_is_listed():
    assert set(HIGH_RES) <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_a_few_steps_and_its_checkpoint_rebuilds(name, tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / name, shrink(name, tmp_path / "run"))
    tr = Trainer(cfg)
    out = tr.run()
    assert out["kimg"] >= 0.048 and not out["stopped"]
    ckpt = latest_ckpt(tmp_path / "run")
    state = checkpoint.load_state(ckpt)
    assert state["nimg"] == tr.nimg
    G, md = checkpoint.build_net(ckpt / "G_ema.safetensors")
    assert md["kind"] == "generator"
    for name, registry in NETWORKS.items():  # every network the recipe names is a file of its own
        spec = getattr(cfg, name)
        assert (ckpt / f"{name}.safetensors").is_file() == (spec is not None), name
        if spec is not None:
            net, md = checkpoint.build_net(ckpt / f"{name}.safetensors")
            assert (md["kind"], md["arch"], type(net)) == (registry.kind, spec.name, type(tr.nets[name]))
    if cfg.progressive is not None:  # grown through 8x8 to 16x16 within the run
        assert tr.stage.resolution == 16
    with torch.no_grad():
        c = torch.arange(2) % G.num_classes if getattr(G, "num_classes", 0) else None
        if getattr(G, "label_nc", 0):  # label maps (SPADE)
            c = torch.randint(0, G.label_nc, (2, 1 + int(G.instance), *G.img_shape[1:]))
        a, b = G.eval()(torch.randn(2, G.z_dim), c), tr.G_ema.eval()(torch.randn(2, G.z_dim), c)
    assert a.shape == b.shape and torch.isfinite(a).all()
    assert (tmp_path / "run" / "samples").is_dir()


def test_generate_samples_a_stylegan2_checkpoint_with_truncation_mixing_and_video(tmp_path):
    run = tmp_path / "run"
    run_script("train.py", ROOT / "configs/stylegan2_mnist.yaml", *shrink("stylegan2_mnist.yaml", run))
    out = tmp_path / "out"
    run_script("generate.py", run, "--seeds", "0-3", "--out", out, "--trunc", "0.5", "--mix-rows", "0-1",
               "--mix-cols", "2-4", "--interp", "0,1", "--frames-per-seed", "3", "--video", out / "walk.gif")
    imgs = np.load(out / "samples.npz")["images"]
    assert imgs.shape == (4, 16, 16, 1)
    assert (out / "mix_grid.png").is_file() and np.load(out / "mix.npz")["images"].shape[:2] == (2, 3)
    from PIL import Image
    with Image.open(out / "walk.gif") as gif:
        assert gif.n_frames >= 2
    zero = tmp_path / "zero"
    run_script("generate.py", run, "--seeds", "0-3", "--out", zero, "--trunc", "0")
    z = np.load(zero / "samples.npz")["images"]
    assert all(np.array_equal(z[0], z[i]) for i in range(4))  # psi = 0: every seed is the average w


def test_flagship_dry_run_without_the_data_prints_config_f_counts_and_warns(tmp_path):
    """Users see the networks before downloading FFHQ: exit 0, the reference counts, one warning line."""
    r = run_script("train.py", ROOT / "configs/stylegan2_ffhq.yaml", "--dry-run", f"run_dir={tmp_path / 'run'}",
                   f"data.shards={tmp_path / 'no-ffhq'}", check=False, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "G: 30,370,060 parameters" in r.stdout and "D: 29,012,513 parameters" in r.stdout
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "no-ffhq" in warnings[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_separate_networks_of_infogan_cgan_classifier_and_vae():
    """Q, C and the VAE's encoder are networks of their own with their own optimizer sections."""
    for name, extra in [("mnist_infogan.yaml", "Q"), ("mnist_infogan_sepq.yaml", "Q"),
                        ("mnist_cgan_classifier.yaml", "C"), ("mnist_wgan_classifier.yaml", "C"),
                        ("mnist_vae.yaml", "E")]:
        cfg = load_config(ROOT / "configs" / name)
        assert getattr(cfg, extra) is not None and extra in cfg.optim, name
        assert any(extra in p.nets for p in cfg.phases), name
    assert load_config(ROOT / "configs" / "mnist_vae.yaml").D is None
