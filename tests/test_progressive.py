"""Progressive growing in the trainer: the stage schedule, growth and fade-in across a resolution
boundary mid-run, per-resolution batches, and exact resume in the middle of a fade-in."""
import subprocess

import pytest
import torch

from hifigan.config import load_config
from hifigan.train.progressive import fade_reals, stage_at
from hifigan.train.trainer import Trainer
from conftest import PY, ROOT, env1, latest_ckpt, read_weights, run_script

PROGAN = str(ROOT / "configs" / "progan_mnist.yaml")


def test_stage_schedule_is_stable_then_fade_then_stable_per_resolution():
    s = lambda k: stage_at(int(k * 1000), 4, 32, stable_kimg=1, fade_kimg=2)  # noqa: E731
    assert (s(0).resolution, s(0).alpha, s(0).index) == (4, 1.0, 0)
    assert (s(0.999).resolution, s(0.999).alpha) == (4, 1.0)
    assert (s(1).resolution, s(1).alpha, s(1).index) == (8, 0.0, 1)
    assert s(2).resolution == 8 and s(2).alpha == pytest.approx(0.5)
    assert (s(3).resolution, s(3).alpha, s(3).index) == (8, 1.0, 2)
    assert (s(4).resolution, s(4).alpha, s(4).index) == (16, 0.0, 3)
    assert (s(7).resolution, s(7).alpha) == (32, 0.0)
    assert (s(9).resolution, s(9).alpha) == (32, 1.0)
    assert (s(1e6).resolution, s(1e6).alpha, s(1e6).index) == (32, 1.0, 6)  # the last resolution trains on


def test_faded_reals_blend_the_lower_resolution_in():
    img = torch.randn(2, 1, 8, 8)
    low = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(img, 2), scale_factor=2)
    assert torch.equal(fade_reals(img, 1.0), img)
    assert torch.allclose(fade_reals(img, 0.0), low)
    assert torch.allclose(fade_reals(img, 0.25), 0.75 * low + 0.25 * img)


def _tiny(run, **extra):
    o = [f"run_dir={run}", "log.progress=false", "log.grid_size=4", "train.threads=1", "train.batch_size=8",
         "G.channel_base=128", "G.channel_max=16", "D.channel_base=128", "D.channel_max=16", "G.z_dim=16",
         "data.resolution=16", "G.resolution=16", "D.resolution=16",
         "progressive.stable_kimg=0.032", "progressive.fade_kimg=0.064", "progressive.batch_size={8: 16}",
         "log.every_kimg=0.016", "log.image_every_kimg=1", "checkpoint.every_kimg=0.048", "train.ema_kimg=0.05"]
    return o + [f"{k}={v}" for k, v in extra.items()]


def test_growth_crosses_resolution_boundaries_with_per_resolution_batches(tmp_path):
    cfg = load_config(PROGAN, _tiny(tmp_path / "run", **{"train.total_kimg": 0.2}))
    tr = Trainer(cfg)
    seen = []
    while tr.nimg < 200:
        tr.train_step()
        seen.append((tr.stage.resolution, round(tr.stage.alpha, 3), tr.batch_size, tr.nets["G"].stage_info()))
    res = [s[0] for s in seen]
    assert res[0] == 4 and 8 in res and res[-1] == 16
    assert all(b == 16 for r, _, b, _ in seen if r == 8) and all(b == 8 for r, _, b, _ in seen if r != 8)
    fading = [a for r, a, _, _ in seen if r == 8 and a < 1]
    assert len(fading) >= 2 and fading == sorted(fading) and fading[0] < 0.5
    assert all(info == (r, pytest.approx(a, abs=1e-3)) for r, a, _, info in seen)
    img = tr.G_ema(torch.randn(3, 16))
    assert img.shape == (3, 1, 16, 16)


def test_resume_in_the_middle_of_a_fade_in_is_bit_identical(tmp_path):
    total = 0.2  # 4x4 to 0.032 kimg, 8x8 fades in until 0.096, stable until 0.128, 16x16 fades in after
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_script("train.py", PROGAN, *_tiny(straight, **{"train.total_kimg": total}))
    run_script("train.py", PROGAN, *_tiny(resumed, **{"train.total_kimg": 0.064}))  # stops mid fade-in of 8x8
    st = torch.load(latest_ckpt(resumed) / "state.pt", weights_only=True)
    assert 32 < st["nimg"] < 96
    stage = read_weights(latest_ckpt(resumed) / "G.safetensors")
    alpha = [v for k, v in stage.items() if k.endswith("stage")][0]
    assert alpha[0].item() == 8 and 0 < alpha[1].item() < 1
    run_script("train.py", PROGAN, *_tiny(resumed, **{"train.total_kimg": total}))
    a, b = latest_ckpt(straight), latest_ckpt(resumed)
    assert a.name == b.name
    for net in ("G", "D", "G_ema"):
        wa, wb = read_weights(a / f"{net}.safetensors"), read_weights(b / f"{net}.safetensors")
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{net}.{k} differs after resuming mid fade-in"


def test_a_fixed_resolution_generator_with_a_progressive_section_is_refused(tmp_path):
    r = subprocess.run([PY, str(ROOT / "launch/train.py"), str(ROOT / "configs/mnist_dcgan.yaml"),
                        f"run_dir={tmp_path}", "progressive.start_resolution=4", "--dry-run"],
                       env=env1(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "does not grow progressively" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_growing_from_shards_reads_each_stage_at_its_resolution_and_resumes_exactly(tmp_path):
    """Shard readers restart at the new resolution and batch size when the stage changes, from the
    positions consumed so far; a run stopped mid fade-in and rerun ends with the same weights."""
    from hifigan.data.pack import pack
    shards = tmp_path / "shards"
    pack("mnist", str(shards), resolution=16, encoding="png", shard_samples=500, progress=False)
    extra = {"data.shards": shards, "data.workers": 1, "data.shuffle_buffer": 64}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_script("train.py", PROGAN, *_tiny(straight, **extra, **{"train.total_kimg": 0.16}))
    run_script("train.py", PROGAN, *_tiny(resumed, **extra, **{"train.total_kimg": 0.064}))
    run_script("train.py", PROGAN, *_tiny(resumed, **extra, **{"train.total_kimg": 0.16}))
    a, b = latest_ckpt(straight), latest_ckpt(resumed)
    sa = torch.load(a / "state.pt", weights_only=True)
    sb = torch.load(b / "state.pt", weights_only=True)
    assert sa["nimg"] == sb["nimg"] and sa["data"] == sb["data"]
    assert sum(sa["data"][0]["positions"]) == sa["nimg"]  # every real image read once, at every resolution
    for net in ("G", "D", "G_ema"):
        wa, wb = read_weights(a / f"{net}.safetensors"), read_weights(b / f"{net}.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), net
