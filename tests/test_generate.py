"""Sampling for StyleGAN-family generators: truncation, style mixing, interpolation videos, CLI errors.

The style-based generator is a tiny module defined here that follows the interface the StyleGAN
models implement (mapping / synthesis / w_avg / num_ws), so these tests do not depend on them; it
is given the StyleGAN family's sampling hooks under its own name, as a registered family would be.
"""
import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import ROOT, run_script, tiny_overrides
from hifigan.errors import UserError
from hifigan.nn.codes import codes_from_normal
from hifigan.registry import GENERATORS
from hifigan.sampling import (STYLE_BASED, MixPlan, InterpPlan, class_rows, code_traversals, generate, interpolate,
                              map_seeds, mix_grid, parse_styles, register_hooks, seed_labels, seed_latents, slerp,
                              style_mix, synthesize, to_uint8, walk, write_mix, write_video)


class TinyStyleG(nn.Module):
    """z [N, 8] -> 2-layer mapping -> ws [N, 4, 8] -> sum of per-style projections -> tanh img [N, 3, 8, 8]."""
    registry_name = "tiny_style"  # sampling looks its hooks up by this name

    def __init__(self):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_classes = 8, 8, 4, 0
        self.img_shape = (3, 8, 8)
        self.fc = nn.Sequential(nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Linear(8, 8))
        self.proj = nn.ModuleList(nn.Linear(8, 3 * 8 * 8) for _ in range(self.num_ws))
        self.register_buffer("w_avg", torch.linspace(-0.5, 0.5, 8))
        self.register_buffer("noise_const", 0.1 * torch.randn(3, 8, 8))

    def mapping(self, z, c=None, psi=1.0, cutoff=None):
        ws = self.fc(z)[:, None].repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if psi != 1:
            cutoff = self.num_ws if cutoff is None else cutoff
            ws[:, :cutoff] = self.w_avg + psi * (ws[:, :cutoff] - self.w_avg)
        return ws

    def synthesis(self, ws, noise_mode="const"):
        x = sum(p(ws[:, i]) for i, p in enumerate(self.proj)).view(-1, *self.img_shape)
        if noise_mode == "const":
            x = x + self.noise_const
        elif noise_mode == "random":
            x = x + 0.1 * torch.randn_like(x)
        return torch.tanh(x)

    def forward(self, z, c=None, psi=1.0, cutoff=None, noise_mode="random"):
        return self.synthesis(self.mapping(z, c, psi, cutoff), noise_mode)


register_hooks(TinyStyleG.registry_name, STYLE_BASED)


class TinyPlainG(nn.Module):
    """A generator without a mapping network: G(z, c) only."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = 8, 0, (1, 4, 4)
        self.fc = nn.Linear(8, 16)

    def forward(self, z, c=None):
        return torch.tanh(self.fc(z)).view(-1, *self.img_shape)


@pytest.fixture
def G():
    torch.manual_seed(0)
    return TinyStyleG().eval().requires_grad_(False)


def direct(G, ws, noise_mode="const"):
    with torch.no_grad():
        return to_uint8(G.synthesis(ws, noise_mode=noise_mode)).numpy()


def direct_ws(G, seeds, psi=1.0, cutoff=None):
    with torch.no_grad():
        return G.mapping(seed_latents(seeds, G.z_dim), None, psi=psi, cutoff=cutoff)


# Truncation -------------------------------------------------------------------------------------

def test_psi_zero_gives_the_average_image_for_every_seed(G):
    imgs = generate(G, [0, 1, 2, 3], psi=0.0)
    avg = direct(G, G.w_avg.expand(1, G.num_ws, G.w_dim))
    assert all(np.array_equal(img, avg[0]) for img in imgs)
    assert not np.array_equal(generate(G, [0])[0], avg[0])


def test_psi_one_is_untruncated(G):
    seeds = [0, 1, 2]
    plain = direct(G, direct_ws(G, seeds))
    assert np.array_equal(generate(G, seeds), plain)
    assert np.array_equal(generate(G, seeds, psi=1.0, cutoff=2), plain)


def test_cutoff_truncates_only_the_styles_below_it(G):
    seeds = [0, 1, 2]
    full, cut = map_seeds(G, seeds), map_seeds(G, seeds, psi=0.5, cutoff=2)
    assert torch.equal(cut[:, 2:], full[:, 2:])
    assert torch.allclose(cut[:, :2], G.w_avg + 0.5 * (full[:, :2] - G.w_avg))
    assert not torch.allclose(cut[:, :2], full[:, :2])
    assert np.array_equal(generate(G, seeds, psi=0.5, cutoff=2), direct(G, cut))


def test_noise_mode_reaches_synthesis(G):
    ws = direct_ws(G, [0, 1])
    assert np.array_equal(generate(G, [0, 1], noise_mode="none"), direct(G, ws, "none"))
    assert not np.array_equal(generate(G, [0, 1], noise_mode="none"), generate(G, [0, 1]))


def test_a_seed_fixes_its_image_whatever_the_batch(G):
    seeds = list(range(10))
    one_batch = generate(G, seeds, batch_size=10, psi=0.7)
    assert np.array_equal(generate(G, seeds, batch_size=3, psi=0.7), one_batch)
    assert np.array_equal(generate(G, [7], batch_size=1, psi=0.7)[0], one_batch[7])
    frames = interpolate(G, [0, 1, 2], "w", frames_per_seed=3, psi=0.7, batch_size=7)
    assert np.array_equal(interpolate(G, [0, 1, 2], "w", frames_per_seed=3, psi=0.7, batch_size=1), frames)


def test_truncation_needs_a_style_based_generator():
    torch.manual_seed(0)
    G = TinyPlainG()
    assert generate(G, [0, 1]).shape == (2, 4, 4, 1)
    for kw in [dict(psi=0.5), dict(cutoff=2), dict(noise_mode="random")]:
        with pytest.raises(UserError, match="style-based generator"):
            generate(G, [0], **kw)
    with pytest.raises(UserError, match="TinyPlainG"):
        style_mix(G, [0], [1])


def test_bad_truncation_options_are_user_errors(G):
    with pytest.raises(UserError, match="--trunc-cutoff 5: this generator has 4 styles"):
        generate(G, [0], psi=0.5, cutoff=5)
    with pytest.raises(UserError, match="--noise-mode"):
        generate(G, [0], noise_mode="fixed")


class EarlyStageStyleG(TinyStyleG):
    """A progressively grown model early in training: synthesis returns 4x4 though img_shape says 8x8."""

    def synthesis(self, ws, noise_mode="const"):
        return torch.nn.functional.avg_pool2d(super().synthesis(ws, noise_mode), 2)


def test_outputs_take_the_size_synthesis_returns():
    torch.manual_seed(0)
    G = EarlyStageStyleG().eval()
    assert generate(G, [0, 1]).shape == (2, 4, 4, 3)
    assert synthesize(G, map_seeds(G, [0, 1])).shape == (2, 4, 4, 3)
    assert style_mix(G, [0], [1, 2])[2].shape == (1, 2, 4, 4, 3)
    assert interpolate(G, [0, 1], "w", frames_per_seed=2).shape == (3, 4, 4, 3)


# Style mixing -----------------------------------------------------------------------------------

def test_mix_cells_are_row_ws_with_the_column_styles(G):
    rows, cols, styles = [0, 1, 2], [5, 6], [1, 2]
    row_imgs, col_imgs, cells = style_mix(G, rows, cols, styles, psi=0.7, batch_size=4)
    assert cells.shape == (3, 2, 8, 8, 3)
    ws_r, ws_c = direct_ws(G, rows, psi=0.7), direct_ws(G, cols, psi=0.7)  # truncation before mixing
    for r in range(3):
        for k in range(2):
            ws = ws_r[r:r + 1].clone()
            ws[:, styles] = ws_c[k, styles]
            assert np.array_equal(cells[r, k], direct(G, ws)[0])
    assert np.array_equal(row_imgs, generate(G, rows, psi=0.7))
    assert np.array_equal(col_imgs, generate(G, cols, psi=0.7))


def test_mixing_every_style_gives_the_column_image(G):
    _, col_imgs, cells = style_mix(G, [0, 1], [5, 6, 7], "0-3")
    assert all(np.array_equal(cells[r, k], col_imgs[k]) for r in range(2) for k in range(3))


def test_mix_styles_default_and_range():
    assert parse_styles(None, 18) == [0, 1, 2, 3]
    assert parse_styles(None, 2) == [0, 1]
    assert parse_styles("3,0-1,1", 4) == [0, 1, 3]
    with pytest.raises(UserError, match="has 4 styles; give indices in 0..3"):
        parse_styles("0-6", 4)
    with pytest.raises(UserError, match="--mix-styles"):
        parse_styles("coarse", 4)


def test_mix_plan_needs_rows_and_cols(G):
    assert MixPlan.parse(G, None, None, None) is None
    with pytest.raises(UserError, match="--mix-cols is missing"):
        MixPlan.parse(G, "0-3", None, None)
    with pytest.raises(UserError, match="--mix-rows SEEDS and --mix-cols SEEDS too"):
        MixPlan.parse(G, None, None, "0-3")
    assert MixPlan.parse(G, "0-1", "5", "2") == MixPlan((0, 1), (5,), (2,))


def test_mix_grid_layout_and_files(G, tmp_path):
    plan = MixPlan((0, 1, 2), (5, 6), (0, 1))
    row_imgs, col_imgs, cells = style_mix(G, plan.rows, plan.cols, plan.styles)
    grid = mix_grid(row_imgs, col_imgs, cells, pad=2)
    assert grid.shape == (4 * 10 + 2, 3 * 10 + 2, 3)
    assert not grid[2:10, 2:10].any()  # blank corner
    assert np.array_equal(grid[2:10, 12:20], col_imgs[0])  # top row: column seeds
    assert np.array_equal(grid[12:20, 2:10], row_imgs[0])  # left column: row seeds
    assert np.array_equal(grid[22:30, 22:30], cells[1, 1])
    write_mix(tmp_path, plan, row_imgs, col_imgs, cells)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "mix_grid.png")), grid)
    data = np.load(tmp_path / "mix.npz")
    assert data["images"].dtype == np.uint8 and np.array_equal(data["images"], cells)
    assert list(data["row_seeds"]) == [0, 1, 2] and list(data["col_seeds"]) == [5, 6]


# Interpolation ----------------------------------------------------------------------------------

def test_slerp_hits_the_ends_exactly_and_moves_the_norm_linearly():
    a, b = seed_latents([0, 1], 64)
    t = torch.linspace(0, 1, 11)
    path = slerp(a, b, t)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert torch.allclose(path.norm(dim=1), (1 - t) * a.norm() + t * b.norm(), rtol=1e-5)
    cos = torch.nn.functional.cosine_similarity(path[:-1], path[1:])
    assert torch.allclose(cos, cos[0].expand_as(cos), atol=1e-5)  # constant angular speed
    assert torch.allclose(slerp(a, 2 * a, t)[5], 1.5 * a)  # parallel: falls back to a straight line


@pytest.mark.parametrize("loop, count", [(False, 4 * 2 + 1), (True, 4 * 3)])
def test_walk_frame_count_and_keyframes(loop, count):
    keys = seed_latents([0, 1, 2], 8)
    frames = walk(keys, 4, loop, slerp)
    assert frames.shape == (count, 8)
    for i in range(3):
        assert torch.equal(frames[4 * i], keys[i])


@pytest.mark.parametrize("space", ["z", "w"])
def test_interpolation_keyframes_are_the_seed_images(G, space):
    frames = interpolate(G, [3, 1, 4], space, frames_per_seed=5, loop=True, psi=0.6)
    assert frames.shape == (15, 8, 8, 3)
    seeds_imgs = generate(G, [3, 1, 4], psi=0.6)
    for i in range(3):
        assert np.array_equal(frames[5 * i], seeds_imgs[i])
    assert len({f.tobytes() for f in frames}) == 15


class TinyCondG(TinyPlainG):
    """Conditional: the class shifts the image, so a wrong label shows."""

    def __init__(self):
        super().__init__()
        self.num_classes = 3

    def forward(self, z, c=None):
        return torch.tanh(self.fc(z) + c[:, None].float()).view(-1, *self.img_shape)


def test_z_walk_of_a_conditional_generator_keeps_one_class():
    torch.manual_seed(0)
    G = TinyCondG()
    frames = interpolate(G, [4, 2], "z", frames_per_seed=2)  # class 4 % 3 = 1 all the way
    assert np.array_equal(frames[0], generate(G, [4])[0])
    assert np.array_equal(frames[2], generate(G, [2], cls=1)[0])
    assert not np.array_equal(frames[2], generate(G, [2])[0])
    assert np.array_equal(interpolate(G, [4, 2], "z", frames_per_seed=2, cls=0)[2], generate(G, [2], cls=0)[0])


def test_interp_plan_checks(G, tmp_path):
    plan = InterpPlan.parse(G, "0,2", out_dir=tmp_path)
    assert plan.video == tmp_path / "interp.gif" and plan.seeds == (0, 2)
    with pytest.raises(UserError, match="at least two seeds"):
        InterpPlan.parse(G, "5")
    with pytest.raises(UserError, match="--interp SEEDS too"):
        InterpPlan.parse(G, None, video="a.gif")
    with pytest.raises(UserError, match="give a .gif or .mp4 path"):
        InterpPlan.parse(G, "0,1", video=tmp_path / "walk.avi")
    with pytest.raises(UserError, match="--space w: needs a style-based generator"):
        InterpPlan.parse(TinyPlainG(), "0,1", space="w")


def test_gif_has_one_frame_per_step(G, tmp_path):
    frames = interpolate(G, [0, 1, 2], "z", frames_per_seed=4)
    path = tmp_path / "sub" / "walk.gif"
    write_video(path, frames, fps=20)
    with Image.open(path) as gif:
        assert gif.n_frames == 9 == len(frames)
        assert gif.size == (8, 8) and gif.info["duration"] == 50
    assert [p.name for p in path.parent.iterdir()] == ["walk.gif"]  # no temporary left behind


def test_mp4_without_imageio_ffmpeg_is_a_user_error(G, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import now raises ImportError
    with pytest.raises(UserError, match="pip install imageio-ffmpeg"):
        write_video(tmp_path / "walk.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None, reason="imageio-ffmpeg not installed")
def test_mp4_is_written(G, tmp_path):
    import imageio_ffmpeg
    frames = interpolate(G, [0, 1], "w", frames_per_seed=6, loop=True)
    write_video(tmp_path / "walk.mp4", frames, fps=12)
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "walk.mp4"))
    assert n == 12


# Command line (a real DCGAN checkpoint) ---------------------------------------------------------

@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dcgan")
    run_script("train.py", ROOT / "configs/mnist_dcgan.yaml", *tiny_overrides(run, **{"train.total_kimg": 0.032}))
    return run


def _one_line_error(returncode, stderr):
    assert returncode == 2, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def test_trunc_on_a_dcgan_checkpoint_exits_2_with_one_line(dcgan_run, tmp_path):
    r = run_script("generate.py", dcgan_run, "--seeds", "0", "--trunc", "0.5", "--out", tmp_path / "o", check=False)
    msg = _one_line_error(r.returncode, r.stderr)
    assert "--trunc 0.5" in msg and "style-based" in msg and "'dcgan'" in msg
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def generate_main():
    spec = importlib.util.spec_from_file_location("launch_generate", ROOT / "launch" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("args, needle", [
    (["--mix-rows", "0-1", "--mix-cols", "2"], "--mix-rows/--mix-cols: needs a style-based generator"),
    (["--mix-rows", "0-1"], "--mix-cols is missing"),
    (["--interp", "0,1", "--space", "w"], "--space w: needs a style-based generator"),
    (["--interp", "0,1", "--video", "walk.avi"], "give a .gif or .mp4 path"),
    (["--trunc-cutoff", "2"], "--trunc-cutoff 2: needs a style-based generator"),
    (["--codes"], "--codes: this generator has no latent codes"),
])
def test_bad_options_exit_2_with_one_line(dcgan_run, tmp_path, capsys, generate_main, args, needle):
    code = generate_main([str(dcgan_run), "--seeds", "0", "--out", str(tmp_path / "o"), *args])
    assert needle in _one_line_error(code, capsys.readouterr().err)
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_z_interpolation_video_from_a_dcgan_checkpoint(dcgan_run, tmp_path, generate_main):
    out = tmp_path / "o"
    assert generate_main([str(dcgan_run), "--seeds", "0,1", "--out", str(out), "--interp", "0,1",
                          "--frames-per-seed", "3", "--loop"]) == 0
    seeds = np.load(out / "samples.npz")["images"]
    with Image.open(out / "interp.gif") as gif:
        assert gif.n_frames == 6
        gif.seek(3)
        assert np.array_equal(np.asarray(gif.convert("L"))[..., None], seeds[1])


# Conditional grids and InfoGAN traversals -------------------------------------------------------

def test_class_rows_put_class_k_in_row_k_in_seed_order():
    seeds = [0, 1, 2, 3, 4, 5, 6]  # classes seed % 3: 0 1 2 0 1 2 0
    images = np.arange(7, dtype=np.uint8).reshape(7, 1, 1, 1) + 1
    grid, cols = class_rows(images, seed_labels(seeds, 3).numpy(), 3)
    assert cols == 3
    assert grid[:, 0, 0, 0].tolist() == [1, 4, 7, 2, 5, 0, 3, 6, 0]  # padded with black cells


def test_code_traversals_vary_one_code_and_keep_the_rest_of_the_seed():
    torch.manual_seed(0)
    G = GENERATORS.build("dcgan", {"z_dim": 8, "code_cat": 3, "code_cont": 2, "resolution": 8, "width": 4}).eval()
    seeds = [4, 7]
    t = code_traversals(G, seeds, span=2.0, steps=5)
    assert sorted(t) == ["cat", "cont0", "cont1"]
    assert t["cat"].shape == (2, 3, 8, 8, 1) and t["cont0"].shape == (2, 5, 8, 8, 1)
    z = seed_latents(seeds, 8)
    category, values = codes_from_normal(z, 3, 2)
    plain = generate(G, seeds)
    for s in range(2):  # the seed's own category / its own code value reproduce its ordinary sample
        assert np.array_equal(t["cat"][s, category[s]], plain[s])
        v = values[s:s + 1].clone()
        v[0, 1] = 1.0
        own = to_uint8(G(z[s:s + 1], codes=(category[s:s + 1], v))).numpy()[0]
        assert np.array_equal(t["cont1"][s, 3], own)  # column 3 of 5 over [-2, 2] is code 1 = 1.0
    assert len({t["cat"][0, k].tobytes() for k in range(3)}) == 3  # the category changes the image


def test_infogan_checkpoint_writes_traversals(tmp_path, generate_main):
    run = tmp_path / "run"
    run_script("train.py", ROOT / "configs/mnist_infogan.yaml", *tiny_overrides(run, **{"train.total_kimg": 0.032,
                                                                                      "Q.width": 8}))
    out = tmp_path / "o"
    assert generate_main([str(run), "--seeds", "0-4", "--out", str(out), "--codes", "--code-steps", "4"]) == 0
    with Image.open(out / "codes_cat.png") as cat, Image.open(out / "codes_cont1.png") as cont:
        assert cat.size[0] > cont.size[0] and cat.size[1] == cont.size[1]  # 10 vs 4 columns, 5 rows each
