"""Checkpoints round-trip through a fresh process, and bad checkpoints fail with one line and exit 2."""
import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PY, ROOT, env1, latest_ckpt, read_weights, run_script, tiny_overrides


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    run_script("train.py", ROOT / "configs/mnist_dcgan.yaml",
               *tiny_overrides(run, **{"train.total_kimg": 0.32, "checkpoint.every_kimg": 0.16,
                                       "checkpoint.keep": 1, "log.every_kimg": 0.08, "log.image_every_kimg": 0.16}))
    return run


def test_run_dir_layout(trained_run):
    ck = latest_ckpt(trained_run)
    assert {p.name for p in ck.iterdir()} == {"G.safetensors", "D.safetensors", "G_ema.safetensors", "state.pt"}
    assert len(list((trained_run / "checkpoints").glob("step-*"))) == 1  # keep=1 pruned the older one
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    assert (trained_run / "config.yaml").is_file()
    state = torch.load(ck / "state.pt", weights_only=True)  # loadable without unpickling code
    assert state["step"] == 20 and state["nimg"] == 320 and len(state["rng"]) == 1
    assert "G:" in state["config"]


def test_tensorboard_has_the_promised_series(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(trained_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ["Loss/Dmain/real", "Loss/Dmain/fake", "Loss/Gmain/adv", "Scores/D_real", "Scores/D_fake",
                "GradNorm/Dmain/D", "GradNorm/Gmain/G", "LR/G", "LR/D", "Timing/images_per_s",
                "Progress/kimg", "Timing/step_time_s", "Memory/peak_MiB"]:
        assert tag in tags, tag
    assert "Samples/G_ema" in acc.Tags()["images"]
    assert acc.Tags()["tensors"]  # the resolved config as text


def test_generator_rebuilds_in_a_fresh_process(trained_run):
    ck = latest_ckpt(trained_run)
    code = (
        "import sys, torch, json\n"
        "from hifigan.checkpoint import build_net\n"
        "from pathlib import Path\n"
        "G, md = build_net(Path(sys.argv[1]) / 'G_ema.safetensors')\n"
        "G.eval()\n"
        "z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))\n"
        "print(json.dumps(G(z).flatten().tolist()))\n"
    )
    out = subprocess.run([PY, "-c", code, str(ck)], env=env1(), capture_output=True, text=True, check=True)
    fresh = torch.tensor(json.loads(out.stdout))
    # Same computation here from the raw tensors: the rebuilt net must be the saved one.
    from hifigan.models.dcgan import DCGANGenerator
    from hifigan.registry import GENERATORS
    from safetensors import safe_open
    with safe_open(str(ck / "G_ema.safetensors"), "pt") as f:
        md = f.metadata()
    G = GENERATORS.build(md["arch"], json.loads(md["net_config"]))
    assert isinstance(G, DCGANGenerator)
    G.load_state_dict(read_weights(ck / "G_ema.safetensors"))
    G.eval()
    with torch.no_grad():
        here = G(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))).flatten()
    assert torch.allclose(fresh, here, atol=1e-6)


def test_generate_output_format(trained_run, tmp_path):
    out = tmp_path / "samples"
    run_script("generate.py", trained_run, "--seeds", "0-9,20", "--out", out)
    names = sorted(p.name for p in out.glob("seed*.png"))
    assert names == [f"seed{s:04d}.png" for s in [*range(10), 20]]
    data = np.load(out / "samples.npz")
    imgs = data["images"]
    assert imgs.dtype == np.uint8 and imgs.shape == (11, 32, 32, 1)
    assert imgs.std() > 5  # not a blank canvas
    assert np.array_equal(np.asarray(Image.open(out / "seed0003.png"))[..., None], imgs[3])
    assert Image.open(out / "grid.png").size[0] > 32
    # A seed fixes its image, whatever else is in the batch.
    out2 = tmp_path / "again"
    run_script("generate.py", latest_ckpt(trained_run) / "G_ema.safetensors", "--seeds", "3", "--out", out2)
    assert np.array_equal(np.load(out2 / "samples.npz")["images"][0], imgs[3])


def test_generate_class_for_unconditional_model_is_a_user_error(trained_run, tmp_path):
    r = run_script("generate.py", trained_run, "--seeds", "0", "--class", "3", "--out", tmp_path, check=False)
    assert r.returncode == 2 and "unconditional" in r.stderr and "Traceback" not in r.stderr


def test_conditional_generate_uses_the_class(tmp_path):
    run = tmp_path / "cond"
    run_script("train.py", ROOT / "configs/mnist_dcgan.yaml",
               *tiny_overrides(run, **{"train.total_kimg": 0.032, "G.num_classes": 10, "D.num_classes": 10}))
    out = tmp_path / "s"
    run_script("generate.py", run, "--seeds", "0-3", "--class", "7", "--out", out)
    assert np.load(out / "samples.npz")["images"].shape == (4, 32, 32, 1)
    r = run_script("generate.py", run, "--seeds", "0", "--class", "12", "--out", out, check=False)
    assert r.returncode == 2 and "classes 0..9" in r.stderr


def _one_line_error(r):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_corrupt_checkpoint(trained_run, tmp_path):
    bad = tmp_path / "G_ema.safetensors"
    raw = (latest_ckpt(trained_run) / "G_ema.safetensors").read_bytes()
    bad.write_bytes(raw[:len(raw) // 2])
    msg = _one_line_error(run_script("generate.py", bad, "--out", tmp_path / "o", check=False))
    assert "corrupt" in msg


def test_foreign_checkpoint(tmp_path):
    from safetensors.torch import save_file
    foreign = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    msg = _one_line_error(run_script("generate.py", foreign, "--out", tmp_path / "o", check=False))
    assert "not a hifigan" in msg


def test_checkpoint_of_another_architecture_is_refused_on_resume(trained_run, tmp_path):
    import shutil
    run = tmp_path / "other"
    shutil.copytree(trained_run, run)
    r = run_script("train.py", ROOT / "configs/mnist_gan.yaml", *tiny_overrides(run, arch="mlp"), check=False)
    assert "different G" in _one_line_error(r)


def test_corrupt_training_state(trained_run, tmp_path):
    import shutil
    run = tmp_path / "corrupt"
    shutil.copytree(trained_run, run)
    (latest_ckpt(run) / "state.pt").write_bytes(b"garbage")
    r = run_script("train.py", ROOT / "configs/mnist_dcgan.yaml", *tiny_overrides(run), check=False)
    assert "corrupt" in _one_line_error(r)


@pytest.mark.parametrize("args, needle", [
    (["configs/missing.yaml"], "config file not found"),
    (["configs/mnist_dcgan.yaml", "train.bach_size=3"], "did you mean train.batch_size"),
    (["configs/mnist_dcgan.yaml", "train.batch_size=many"], "expected an integer"),
    (["configs/mnist_dcgan.yaml", "phases.0.name=Dmian"], "has no phase 'Dmian'"),
    (["configs/mnist_acgan.yaml", "D.aux_classes=0"], "needs D.aux_classes"),
    (["configs/mnist_vae.yaml", "D.arch=dcgan"], "does not use a network D"),
])
def test_bad_input_exits_2_with_one_line(args, needle, tmp_path):
    r = run_script("train.py", *args, f"run_dir={tmp_path}", "--dry-run", check=False)
    assert needle in _one_line_error(r)
    assert not any(tmp_path.iterdir())  # the dry run wrote nothing


def test_missing_data_is_a_warning_in_a_dry_run_and_an_error_in_a_real_one(tmp_path):
    args = ["configs/mnist_dcgan.yaml", "data.path=/no/such/folder", f"run_dir={tmp_path / 'run'}"]
    r = run_script("train.py", "--dry-run", *args, check=False)  # --dry-run before the overrides
    assert r.returncode == 0, r.stderr
    assert "G: 1,066,880 parameters" in r.stdout and "D: 661,248 parameters" in r.stdout
    assert "warning" in r.stderr and "data.path does not exist" in r.stderr
    assert not (tmp_path / "run").exists()
    r = run_script("train.py", *args, check=False)
    assert "data.path does not exist" in _one_line_error(r)
