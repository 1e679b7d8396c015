"""Projection into a StyleGAN's latent space (Image2StyleGAN, arXiv:1904.03189; Image2StyleGAN++,
arXiv:1911.11544): a seed's own image is recovered in W+, masks hide the target's pixels from every
loss, edits splice ws rows exactly, noise maps are optimized and renormalized, and launch/project.py
keeps its command-line contract and fails in one line on bad input."""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from hifigan import checkpoint
from hifigan.errors import UserError
from hifigan.nn.noise import NoiseInjection
from hifigan.project import crossover, make_config, noise_modules, project, psnr, ssim, style_transfer
from hifigan.project.config import lr_at
from hifigan.project.image2stylegan import explicit_noise
from hifigan.project.losses import masked_mse, noise_regularization
from hifigan.registry import GENERATORS
from hifigan.sampling.generate import generate

from conftest import ROOT, run_script

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(resolution=16, channel_base=256, channel_max=32, z_dim=32, w_dim=32, channels=1, mapping_layers=2)
FAST = dict(space="w+", loss="mse", lr=0.3, w_avg_samples=1000)  # random weights: a larger lr than 0.1 helps


def tiny_g(noise_strength: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    G = GENERATORS.build("stylegan2", TINY).eval().requires_grad_(False)
    with torch.no_grad():  # noise strengths start at 0; the noise tests give the maps something to do
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.strength.fill_(noise_strength)
    return G


@pytest.fixture(scope="module")
def G():
    return tiny_g()


@pytest.fixture(scope="module")
def G_noisy():
    return tiny_g(0.1)


@pytest.fixture(scope="module")
def g_file(G, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    ckpt = checkpoint.save(root, 1, {"G_ema": (G, "generator", "stylegan2")}, {}, {}, keep=1)
    return ckpt / "G_ema.safetensors"


def seed_target(G, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    u8 = generate(G, [seed])[0]  # [H, W, C]
    return u8, torch.from_numpy(u8).float().permute(2, 0, 1)[None] / 127.5 - 1


@pytest.fixture(scope="module")
def project_main():
    spec = importlib.util.spec_from_file_location("launch_project", ROOT / "launch" / "project.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# ----------------------------------------------------------------------------------------------
# the optimization

def test_w_plus_projection_of_a_seed_image_reaches_30_db(G):
    u8, target = seed_target(G, 0)
    result = project(G, target, make_config(steps=300, **FAST))
    assert result.ws.shape == (G.num_ws, G.w_dim)
    assert psnr(result.image, u8) >= 30.0
    assert result.history[-1]["psnr"] == pytest.approx(psnr(result.image, u8))


def test_masked_projection_reconstructs_the_known_region_and_ignores_the_hidden_one(G):
    u8, _ = seed_target(G, 1)
    mask = np.ones(u8.shape[:2], np.uint8)
    mask[4:12, 4:12] = 0  # the painted square is hidden
    painted = {}
    for value in (0, 255):
        p = u8.copy()
        p[4:12, 4:12] = value
        painted[value] = torch.from_numpy(p).float().permute(2, 0, 1)[None] / 127.5 - 1
    m = torch.from_numpy(mask).float()[None, None]

    conv = nn.Conv2d(3, 4, 3)  # a stand-in perceptual network: its features see the whole image
    def perceptual(a, b):
        return (conv(a.expand(-1, 3, -1, -1)) - conv(b.expand(-1, 3, -1, -1))).pow(2).flatten(1).mean(1)
    cfg = make_config(steps=12, **{**FAST, "loss": "mse+perceptual"})
    a, b = (project(G, painted[v], cfg, m, perceptual) for v in (0, 255))
    assert torch.equal(a.ws, b.ws)  # what is painted under the mask changes nothing

    img = torch.zeros_like(painted[0], requires_grad=True)
    grads = [torch.autograd.grad(masked_mse(img, painted[v], m).sum(), img)[0] for v in (0, 255)]
    assert torch.equal(grads[0], grads[1])

    result = project(G, painted[255], make_config(steps=300, **FAST), m)
    assert psnr(result.image, u8, mask) >= 30.0   # the known region is reconstructed
    painted_u8 = u8.copy()
    painted_u8[4:12, 4:12] = 255
    hidden = 1 - mask  # G fills the hole from what it knows, not with the paint it never saw
    assert psnr(result.image, u8, hidden) > psnr(result.image, painted_u8, hidden)


def test_crossover_and_style_transfer_take_coarse_rows_from_one_and_fine_rows_from_the_other():
    ws_a, ws_b = torch.randn(2, 8, 5).unbind(0)
    for fn in (crossover, style_transfer):
        out = fn(ws_a, ws_b, 3)
        assert torch.equal(out[:3], ws_a[:3]) and torch.equal(out[3:], ws_b[3:])
    assert torch.equal(crossover(ws_a, ws_b, 0), ws_b) and torch.equal(crossover(ws_a, ws_b, 8), ws_a)
    with pytest.raises(UserError, match="--layer 9"):
        crossover(ws_a, ws_b, 9)


def test_joint_noise_projection_returns_renormalized_maps_and_restores_g(G_noisy):
    G = G_noisy
    before = {n: m.noise_const.clone() for n, m in noise_modules(G)}
    _, target = seed_target(G, 2)
    result = project(G, target, make_config(steps=10, noise="joint", noise_reg=1e5, **FAST))
    assert set(result.noise) == set(before)
    for n, v in result.noise.items():
        assert abs(float(v.mean())) < 1e-4 and float(v.square().mean()) == pytest.approx(1.0, abs=1e-3)
        assert not torch.equal(v, before[n])  # optimized
        assert torch.equal(dict(noise_modules(G))[n].noise_const, before[n])  # G's buffers are back
    ws = result.ws[None]
    with torch.no_grad():
        own = G.synthesis(ws, noise_mode="const")
        with explicit_noise(G, result.noise):
            theirs = G.synthesis(ws, noise_mode="const")
    assert not torch.allclose(own, theirs)


def test_noise_after_phase_runs_the_extra_steps(G_noisy):
    G = G_noisy
    _, target = seed_target(G, 2)
    result = project(G, target, make_config(steps=4, noise="after", noise_steps=3, log_every=1, **FAST))
    assert result.steps == 7 and [h["step"] for h in result.history] == list(range(7)) and result.noise


def test_noise_regularization_penalizes_spatially_correlated_maps():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(32, 32, generator=gen)
    smooth = torch.nn.functional.interpolate(torch.randn(1, 1, 4, 4, generator=gen), size=32, mode="bilinear")[0, 0]
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert float(noise_regularization([smooth])) > 50 * float(noise_regularization([white]))


def test_learning_rate_ramps_and_presets():
    cfg = make_config("stylegan2", loss="mse")
    assert (cfg.space, cfg.steps, cfg.lr, cfg.noise, cfg.noise_reg, cfg.loss) == ("w", 1000, 0.1, "joint", 1e5, "mse")
    assert lr_at(cfg, 0.0, 0.1) == 0 and lr_at(cfg, 0.05, 0.1) == pytest.approx(0.1)
    assert lr_at(cfg, 0.5, 0.1) == pytest.approx(0.1) and lr_at(cfg, 0.875, 0.1) == pytest.approx(0.05)
    i2s = make_config("image2stylegan")
    assert (i2s.space, i2s.steps, i2s.lr, i2s.betas, i2s.eps, i2s.loss) == ("w+", 5000, 0.01, (0.9, 0.999), 1e-8,
                                                                            "mse+perceptual")
    assert lr_at(i2s, 0.0, 0.01) == 0.01 and make_config("image2stylegan++").noise == "after"
    for bad in (dict(steps=0), dict(lr=math.nan), dict(lr=math.inf), dict(space="q")):
        with pytest.raises(UserError):
            make_config(**bad)


def test_psnr_and_ssim():
    a = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert psnr(a, a) == 100.0 and ssim(a, a) == pytest.approx(1.0)
    b = a.astype(np.int16) + 2
    assert psnr(a, np.clip(b, 0, 255).astype(np.uint8)) == pytest.approx(10 * math.log10(255 ** 2 / 4), abs=0.2)


# ----------------------------------------------------------------------------------------------
# the command line

def test_cli_contract_writes_projection_npz_and_metrics(g_file, tmp_path):
    from PIL import Image
    img = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    r = run_script("project.py", g_file, "--target", img, "--space", "w+", "--steps", "20", "--loss", "mse",
                   "--out", out, "--device", "cpu", "--w-avg-samples", "500")
    assert "40x30 RGB -> 16x16 grayscale" in r.stdout
    with np.load(out / "projection.npz") as f:
        assert f["ws"].dtype == np.float32 and f["ws"].shape == (6, 32)
        assert f["image"].dtype == np.uint8 and f["image"].shape == (16, 16, 1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"psnr", "ssim", "seconds", "steps", "space"} <= set(metrics) and metrics["space"] == "w+"
    assert (out / "reconstruction.png").is_file() and (out / "target.png").is_file()


def test_cli_seed_mask_video_tensorboard_and_crossover(g_file, tmp_path, project_main, capsys):
    from PIL import Image
    mask = np.full((8, 8), 255, np.uint8)
    mask[2:4, 2:4] = 0
    Image.fromarray(mask).save(tmp_path / "m.png")
    common = ["--device", "cpu", "--w-avg-samples", "200", "--steps", "6", "--log-every", "2"]
    assert project_main([str(g_file), "--seed", "0-1", "--mask", str(tmp_path / "m.png"), "--noise", "--video",
                         "p.gif", "--tensorboard", "--out", str(tmp_path / "o"), *common]) == 0
    assert "mask" in capsys.readouterr().out
    for s in ("seed0000", "seed0001"):
        d = tmp_path / "o" / s
        assert (d / "p.gif").is_file() and any((d / "tensorboard").iterdir())
        assert "psnr_known" in json.loads((d / "metrics.json").read_text())
        with np.load(d / "projection.npz") as f:
            assert any(k.startswith("noise_") for k in f.files)
    a, b = (tmp_path / "o" / s / "projection.npz" for s in ("seed0000", "seed0001"))
    assert project_main([str(g_file), "--crossover", str(a), str(b), "--layer", "2", "--out", str(tmp_path / "x"),
                         "--device", "cpu"]) == 0
    with np.load(tmp_path / "x" / "edit.npz") as f, np.load(a) as fa, np.load(b) as fb:
        assert np.array_equal(f["ws"][:2], fa["ws"][:2]) and np.array_equal(f["ws"][2:], fb["ws"][2:])


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    G = GENERATORS.build("mlp", {"z_dim": 4, "hidden": [8], "resolution": 8})
    return checkpoint.save(tmp_path_factory.mktemp("mlp"), 1, {"G": (G, "generator", "mlp")}, {}, {}, keep=1) / "G.safetensors"


@pytest.mark.parametrize("case, needle", [
    ("missing_target", "no such file or folder"),
    ("not_an_image", "not an image"),
    ("steps_0", "--steps 0"),
    ("lr_nan", "--lr nan"),
    ("empty_mask", "no known (white) pixels"),
    ("perceptual_without_file", "--vgg is missing"),
    ("lpips_without_file", "--vgg is missing"),
    ("not_a_stylegan", "needs a style-based generator"),
    ("missing_checkpoint", "no such file or folder"),
])
def test_bad_input_exits_2_with_one_line(g_file, mlp_file, tmp_path, project_main, capsys, case, needle):
    from PIL import Image
    img = tmp_path / "t.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(img)
    ckpt, args = str(g_file), ["--target", str(img)]
    if case == "missing_target":
        args = ["--target", str(tmp_path / "nope.png")]
    elif case == "not_an_image":
        (tmp_path / "x.png").write_text("hello")
        args = ["--target", str(tmp_path / "x.png")]
    elif case == "steps_0":
        args += ["--steps", "0"]
    elif case == "lr_nan":
        args += ["--lr", "nan"]
    elif case == "empty_mask":
        args += ["--mask", str(img)]
    elif case == "perceptual_without_file":
        args += ["--loss", "mse+perceptual"]
    elif case == "lpips_without_file":
        args += ["--preset", "stylegan2"]
    elif case == "not_a_stylegan":
        ckpt = str(mlp_file)
    elif case == "missing_checkpoint":
        ckpt = str(tmp_path / "no_run")
    code = project_main([ckpt, *args, "--out", str(tmp_path / "o"), "--device", "cpu", "--steps", "2"]
                        if case != "steps_0" else [ckpt, *args, "--out", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "o" / "projection.npz").exists()


def test_bad_input_exits_2_in_a_fresh_process(g_file, tmp_path):
    r = run_script("project.py", g_file, "--seed", "0", "--steps", "-3", "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--steps -3" in r.stderr
