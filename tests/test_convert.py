"""launch/convert.py: NVIDIA network snapshots and rosinality checkpoints -> hifigan run dirs.

The NVIDIA-format files are written here without NVIDIA's code: stand-in modules named
`torch_utils.persistence` and `dnnlib.util` exist only while pickling, so the files hold the same
globals and the same `_reconstruct_persistent_obj(meta)` calls (meta: type, version, module_src,
class_name, state = the module's __dict__) that `torch_utils.persistence` writes.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from hifigan import checkpoint
from hifigan.convert import convert, nvidia
from hifigan.errors import UserError
from hifigan.registry import DISCRIMINATORS, GENERATORS
from hifigan.sampling import GenerateOptions, generate_from_checkpoint, seed_latents

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "launch"))
import convert as convert_script  # noqa: E402
import generate as generate_script  # noqa: E402

HARMLESS_SRC = "raise RuntimeError('embedded module source must never run')\n"
BUFFERS = ("noise_const", "w_avg", "resample_filter")


# ----------------------------------------------------------------------------------------------
# Writing NVIDIA-format pickles without NVIDIA's code

@contextlib.contextmanager
def reference_modules(canary: Path | None = None):
    """`torch_utils.persistence` and `dnnlib.util` stand-ins, importable only inside the block; their
    functions write `canary` if anything ever calls them."""
    def reconstruct(meta):
        if canary is not None:
            canary.write_text("reconstruct ran")
        raise AssertionError("the real _reconstruct_persistent_obj must never be called")
    reconstruct.__module__, reconstruct.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"

    class EasyDict(dict):
        pass
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    mods = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": types.ModuleType("p"),
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": types.ModuleType("u")}
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = reconstruct
    mods["dnnlib.util"].EasyDict = EasyDict
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield EasyDict
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Persistent:
    """Pickles as torch_utils.persistence does: `_reconstruct_persistent_obj(meta)`."""

    def __init__(self, class_name, init_kwargs=None, src=HARMLESS_SRC):
        self.class_name, self.src = class_name, src
        self.state = {"training": False, "_parameters": collections.OrderedDict(),
                      "_buffers": collections.OrderedDict(), "_non_persistent_buffers_set": set(),
                      "_modules": collections.OrderedDict(), "_forward_hooks": collections.OrderedDict(),
                      "_init_args": (), "_init_kwargs": init_kwargs or {}}

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.src, class_name=self.class_name, state=self.state)
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,)


def record_tree(class_name, tensors: dict, init_kwargs, src=HARMLESS_SRC) -> Persistent:
    """A Persistent module tree holding `tensors` (reference names; parameters vs buffers by name)."""
    root = Persistent(class_name, init_kwargs, src)
    for name, t in tensors.items():
        node, *path = root, *name.split(".")
        for part in path[:-1]:
            node = node.state["_modules"].setdefault(part, Persistent("Layer", {}, src))
        leaf = path[-1]
        if leaf in BUFFERS:
            node.state["_buffers"][leaf] = t.detach().clone()
        else:
            node.state["_parameters"][leaf] = torch.nn.Parameter(t.detach().clone(), requires_grad=False)
    return root


def randomize(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
    return net.eval()


def tiny_nets(num_classes=0, resolution=8):
    g_cfg = dict(resolution=resolution, channel_base=64, channel_max=16, z_dim=8, w_dim=8, mapping_layers=2,
                 num_classes=num_classes)
    d_cfg = dict(resolution=resolution, channel_base=64, channel_max=16, num_classes=num_classes, mbstd_group=2)
    if num_classes:
        d_cfg["mapping_layers"] = 2
    G = randomize(GENERATORS.build("stylegan2", g_cfg), 1)
    G_ema = randomize(GENERATORS.build("stylegan2", g_cfg), 2)
    D = randomize(DISCRIMINATORS.build("stylegan2", d_cfg), 3)
    return G, G_ema, D


def reference_kwargs(G, D):
    g, d = G.cfg, D.cfg
    gk = dict(z_dim=g.z_dim, c_dim=g.num_classes, w_dim=g.w_dim, img_resolution=g.resolution, img_channels=g.channels,
              mapping_kwargs=dict(num_layers=g.mapping_layers),
              synthesis_kwargs=dict(channel_base=g.channel_base, channel_max=g.channel_max, num_fp16_res=0,
                                    conv_clamp=None, architecture="skip"))
    dk = dict(c_dim=d.num_classes, img_resolution=d.resolution, img_channels=d.channels, architecture="resnet",
              channel_base=d.channel_base, channel_max=d.channel_max, num_fp16_res=0, conv_clamp=None,
              block_kwargs={}, mapping_kwargs=dict(num_layers=getattr(d, "mapping_layers", 8)),
              epilogue_kwargs=dict(mbstd_group_size=d.mbstd_group))
    return gk, dk


def theirs(net, renamer) -> dict:
    out = {renamer.theirs(k): v for k, v in net.state_dict().items()}
    assert None not in out
    return out


def write_snapshot(path: Path, G, G_ema, D, src=HARMLESS_SRC, canary=None, g_tree=None, extra=None) -> Path:
    gk, dk = reference_kwargs(G, D)
    with reference_modules(canary) as EasyDict:
        filt = torch.tensor([1., 3, 3, 1])
        filt = filt[:, None] * filt[None] / 64
        g_t = {**theirs(G, nvidia.G_NAMES), "synthesis.b8.resample_filter": filt, "synthesis.b8.conv0.resample_filter": filt}
        snap = {"G": g_tree or record_tree("Generator", g_t, EasyDict(gk), src),
                "G_ema": g_tree or record_tree("Generator", theirs(G_ema, nvidia.G_NAMES), EasyDict(gk), src),
                "D": record_tree("Discriminator", {**theirs(D, nvidia.D_NAMES), "b8.resample_filter": filt},
                                 EasyDict(dk), src),
                "augment_pipe": None, "training_set_kwargs": EasyDict(path="ffhq.zip", use_labels=False, **(extra or {}))}
        path.write_bytes(pickle.dumps(snap, protocol=4))
    assert "torch_utils.persistence" not in sys.modules
    return path


def images(G, z, c):
    with torch.no_grad():
        return G(z, c, noise_mode="const")


def assert_same_networks(out: Path, G_ema, D, num_classes=0):
    G2 = checkpoint.load_generator(out, "cpu")
    D2, _ = checkpoint.build_net(checkpoint.resolve(out) / "D.safetensors")
    z = torch.randn(4, G_ema.z_dim, generator=torch.Generator().manual_seed(5))
    c = torch.arange(4) % num_classes if num_classes else None
    img = images(G_ema, z, c)
    torch.testing.assert_close(images(G2, z, c), img, atol=1e-5, rtol=0)
    torch.testing.assert_close(D2.eval()(img, c), D(img, c), atol=1e-5, rtol=0)
    assert torch.equal(G2.mapping.w_avg, G_ema.mapping.w_avg)


# ----------------------------------------------------------------------------------------------
# NVIDIA snapshots

@pytest.mark.parametrize("num_classes", [0, 3])
def test_nvidia_snapshot_converts_to_identical_images_and_logits(tmp_path, num_classes):
    G, G_ema, D = tiny_nets(num_classes)
    src = write_snapshot(tmp_path / "network-snapshot-000100.pkl", G, G_ema, D)
    out = convert(src, tmp_path / "run")
    assert_same_networks(out, G_ema, D, num_classes)
    G_file, _ = checkpoint.build_net(checkpoint.resolve(out) / "G.safetensors")
    z = torch.randn(2, 8)
    c = torch.arange(2) % num_classes if num_classes else None
    torch.testing.assert_close(images(G_file, z, c), images(G, z, c), atol=1e-5, rtol=0)
    text = (out / "config.yaml").read_text()
    assert "converted from stylegan2-ada-pytorch:network-snapshot-000100.pkl" in text


def test_embedded_source_never_runs(tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    evil = f"open({str(marker)!r}, 'w').write('ran')\nprint('PAYLOAD RAN')\nclass Generator: pass\n"
    src = write_snapshot(tmp_path / "evil.pkl", *tiny_nets(), src=evil, canary=tmp_path / "canary.txt")
    convert(src, tmp_path / "run")
    assert not marker.exists() and not (tmp_path / "canary.txt").exists()
    assert "PAYLOAD RAN" not in capsys.readouterr().out


@pytest.mark.parametrize("module,name,args", [
    ("os", "system", "(Vtouch {m}\ntR."),
    ("posix", "system", "(Vtouch {m}\ntR."),
    ("builtins", "eval", "(V__import__('os').system('touch {m}')\ntR."),
    ("subprocess", "Popen", "((Vtouch\nV{m}\nltR."),
    ("dnnlib.tflib.network", "Network", "(tR."),  # a TensorFlow-era (ProGAN / StyleGAN2 TF) pickle
])
def test_unexpected_globals_are_refused_and_nothing_runs(tmp_path, capsys, module, name, args):
    marker = tmp_path / "ran.txt"
    src = tmp_path / "bad.pkl"
    src.write_bytes(b"\x80\x02" + f"c{module}\n{name}\n{args.format(m=marker)}".encode())
    assert convert_script.main([str(src), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"refused to load {module}.{name}" in err and "network-snapshot" in err
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_refused_global_nested_inside_a_snapshot(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return os.system, ("true",)
    src = write_snapshot(tmp_path / "s.pkl", *tiny_nets(), extra={"hook": Evil()})
    with pytest.raises(UserError, match=r"refused to load (os|posix)\.system"):
        convert(src, tmp_path / "run")


def test_stylegan3_synthesis_is_refused(tmp_path, capsys):
    G, G_ema, D = tiny_nets()
    gk, _ = reference_kwargs(G, D)
    with reference_modules():
        g3 = Persistent("Generator", gk)
        syn = Persistent("SynthesisNetwork", {})
        for layer in ("input", "L0_36_512", "L1_36_512", "L2_52_512", "L3_52_512", "L4_84_512"):
            syn.state["_modules"][layer] = Persistent("SynthesisLayer", {})
        g3.state["_modules"].update(mapping=Persistent("MappingNetwork", {}), synthesis=syn)
    src = write_snapshot(tmp_path / "sg3.pkl", G, G_ema, D, g_tree=g3)
    assert convert_script.main([str(src), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "StyleGAN3" in err and "input, L0_36_512" in err and err.count("\n") == 1


def test_unsupported_architecture_setting_is_refused(tmp_path):
    G, G_ema, D = tiny_nets()
    gk, _ = reference_kwargs(G, D)
    gk["synthesis_kwargs"]["architecture"] = "resnet"
    with reference_modules():
        tree = record_tree("Generator", theirs(G, nvidia.G_NAMES), gk)
    src = write_snapshot(tmp_path / "s.pkl", G, G_ema, D, g_tree=tree)
    with pytest.raises(UserError, match="architecture = 'resnet' is not supported"):
        convert(src, tmp_path / "run")


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "folder", "missing", "torch-truncated"])
def test_damaged_inputs_are_one_line_and_write_nothing(tmp_path, capsys, damage):
    good = write_snapshot(tmp_path / "good.pkl", *tiny_nets())
    src = tmp_path / "in.pkl"
    if damage == "empty":
        src.write_bytes(b"")
    elif damage == "truncated":
        src.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    elif damage == "garbage":
        src.write_bytes(b"hello, not a checkpoint")
    elif damage == "folder":
        src.mkdir()
    elif damage == "torch-truncated":
        torch.save({"g_ema": {"x": torch.zeros(1000)}}, src)
        src.write_bytes(src.read_bytes()[:300])
    out = tmp_path / "sub" / "run"
    assert convert_script.main([str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("sub/.*"))


def test_existing_out_needs_force_and_a_failed_write_leaves_it_alone(tmp_path, capsys, monkeypatch):
    src = write_snapshot(tmp_path / "s.pkl", *tiny_nets())
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    assert convert_script.main([str(src), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").exists()

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device", str(out))
    monkeypatch.setattr(checkpoint, "save", full_disk)
    assert convert_script.main([str(src), "--out", str(out), "--force"]) == 2
    assert (out / "keep.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run", "s.pkl"]
    monkeypatch.undo()
    assert convert_script.main([str(src), "--out", str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "checkpoints" / "latest").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "s.pkl"]


# ----------------------------------------------------------------------------------------------
# rosinality checkpoints

def to_rosinality_g(G) -> dict:
    """Our G's tensors under rosinality's names (the inverse of the table in convert/rosinality.py)."""
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    out = {f"style.{i + 1}.{p}": sd[f"mapping.layers.{i}.{p}"] for i in range(G.cfg.mapping_layers)
           for p in ("weight", "bias")}
    out["input.input"] = sd["synthesis.blocks.b4.const.const"][None]
    res = [2 ** i for i in range(3, G.cfg.resolution.bit_length())]
    layers = [("conv1", "b4.conv1")] + [(f"convs.{2 * j + k}", f"b{r}.conv{k}") for j, r in enumerate(res) for k in (0, 1)]
    kernel = torch.tensor([1., 3, 3, 1])
    kernel = kernel[:, None] * kernel[None] / 64
    for i, (theirs_, ours) in enumerate(layers):
        b = f"synthesis.blocks.{ours}"
        out.update({f"{theirs_}.conv.weight": sd[f"{b}.conv.weight"][None],
                    f"{theirs_}.conv.modulation.weight": sd[f"{b}.conv.affine.weight"],
                    f"{theirs_}.conv.modulation.bias": sd[f"{b}.conv.affine.bias"],
                    f"{theirs_}.activate.bias": sd[f"{b}.conv.bias"],
                    f"{theirs_}.noise.weight": sd[f"{b}.noise.strength"].reshape(1),
                    f"noises.noise_{i}": sd[f"{b}.noise.noise_const"][None, None]})
        if ours.endswith("conv0"):
            out[f"{theirs_}.conv.blur.kernel"] = kernel * 4
    for theirs_, ours in [("to_rgb1", "b4")] + [(f"to_rgbs.{j}", f"b{r}") for j, r in enumerate(res)]:
        b = f"synthesis.blocks.{ours}.torgb.conv"
        out.update({f"{theirs_}.conv.weight": sd[f"{b}.weight"][None],
                    f"{theirs_}.conv.modulation.weight": sd[f"{b}.affine.weight"],
                    f"{theirs_}.conv.modulation.bias": sd[f"{b}.affine.bias"],
                    f"{theirs_}.bias": sd[f"{b}.bias"].reshape(1, -1, 1, 1)})
    return out


def to_rosinality_d(D) -> dict:
    sd = {k: v.clone() for k, v in D.state_dict().items()}
    R = D.cfg.resolution
    out = {"convs.0.0.weight": sd[f"blocks.b{R}.fromrgb.weight"], "convs.0.1.bias": sd[f"blocks.b{R}.fromrgb.bias"]}
    kernel = torch.tensor([1., 3, 3, 1])
    kernel = kernel[:, None] * kernel[None] / 64
    for k, r in enumerate([R // 2 ** i for i in range(R.bit_length() - 3)], start=1):
        b = f"blocks.b{r}"
        out.update({f"convs.{k}.conv1.0.weight": sd[f"{b}.conv0.weight"], f"convs.{k}.conv1.1.bias": sd[f"{b}.conv0.bias"],
                    f"convs.{k}.conv2.0.kernel": kernel, f"convs.{k}.conv2.1.weight": sd[f"{b}.conv1.weight"],
                    f"convs.{k}.conv2.2.bias": sd[f"{b}.conv1.bias"], f"convs.{k}.skip.0.kernel": kernel,
                    f"convs.{k}.skip.1.weight": sd[f"{b}.skip.weight"]})
    for theirs_, ours in (("final_conv.0.weight", "conv.weight"), ("final_conv.1.bias", "conv.bias"),
                          ("final_linear.0.weight", "fc.weight"), ("final_linear.0.bias", "fc.bias"),
                          ("final_linear.1.weight", "out.weight"), ("final_linear.1.bias", "out.bias")):
        out[theirs_] = sd[f"epilogue.{ours}"]
    return out


def rosinality_nets():
    """Their channel layout: every resolution up to 32 has channel_max channels."""
    g_cfg = dict(resolution=16, channel_base=512, channel_max=16, z_dim=8, w_dim=8, mapping_layers=2)
    d_cfg = dict(resolution=16, channel_base=512, channel_max=16, mbstd_group=4)
    return (randomize(GENERATORS.build("stylegan2", g_cfg), 1), randomize(GENERATORS.build("stylegan2", g_cfg), 2),
            randomize(DISCRIMINATORS.build("stylegan2", d_cfg), 3))


def test_rosinality_checkpoint_converts_to_identical_images_and_logits(tmp_path):
    G, G_ema, D = rosinality_nets()
    src = tmp_path / "550000.pt"
    torch.save({"g": to_rosinality_g(G), "d": to_rosinality_d(D), "g_ema": to_rosinality_g(G_ema),
                "g_optim": {"state": {}, "param_groups": []}, "d_optim": {"state": {}, "param_groups": []},
                "args": argparse.Namespace(size=16, latent=8, n_mlp=2, channel_multiplier=2),
                "latent_avg": G_ema.mapping.w_avg.clone(), "ada_aug_p": 0.1}, src)
    out = convert(src, tmp_path / "run")
    assert_same_networks(out, G_ema, D)


def test_rosinality_generator_only_estimates_w_avg_and_notes_it(tmp_path, capsys):
    G, G_ema, D = rosinality_nets()
    src = tmp_path / "g_ema.pt"
    torch.save({"g_ema": to_rosinality_g(G_ema)}, src)
    out = convert(src, tmp_path / "run")
    text = capsys.readouterr().out
    assert "no latent_avg" in text and "no 'd'" in text
    G2 = checkpoint.load_generator(out, "cpu")
    z = torch.randn(10_000, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(G2.mapping.w_avg, G_ema.mapping(z)[:, 0].mean(0))


def test_rosinality_pickled_code_is_refused(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {tmp_path / 'ran.txt'}",)
    src = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "x": Evil()}, src)
    assert convert_script.main([str(src), "--out", str(tmp_path / "run")]) == 2
    assert "refused" in capsys.readouterr().err and not (tmp_path / "ran.txt").exists()


# ----------------------------------------------------------------------------------------------
# Seeds: NVIDIA's generate.py convention

def test_numpy_seed_rng_draws_nvidia_generate_z():
    z = seed_latents([0, 7, 2 ** 32 - 1], 8, rng="numpy")
    for row, s in zip(z, [0, 7, 2 ** 32 - 1]):
        assert torch.equal(row, torch.from_numpy(np.random.RandomState(s).randn(1, 8)).float()[0])
    with pytest.raises(UserError, match="numpy's range"):
        seed_latents([2 ** 32], 8, rng="numpy")


def test_generate_seed_rng_numpy_uses_converted_noise_const(tmp_path):
    G, G_ema, D = tiny_nets()
    out = convert(write_snapshot(tmp_path / "s.pkl", G, G_ema, D), tmp_path / "run")
    assert generate_script.main([str(out), "--seeds", "0-3", "--seed-rng", "numpy", "--trunc", "1",
                                 "--noise-mode", "const", "--out", str(tmp_path / "s"), "--device", "cpu"]) == 0
    got = np.load(tmp_path / "s" / "samples.npz")["images"]
    z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, 8) for s in range(4)])).float()
    want = images(G_ema, z, None)
    want = (want * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    torch_imgs = generate_from_checkpoint(out, tmp_path / "t", GenerateOptions(seeds="0-3", device="cpu"))
    assert not np.array_equal(torch_imgs, got)  # the default stays hifigan's torch seeds


# ----------------------------------------------------------------------------------------------
# Training resumes from a converted run dir

def test_training_resumes_from_converted_weights_with_fresh_optimizers(tmp_path, capsys):
    from hifigan.train.api import train
    g = dict(resolution=8, channel_base=64, channel_max=16, z_dim=8, w_dim=8, mapping_layers=2, channels=1)
    d = dict(resolution=8, channel_base=64, channel_max=16, channels=1, mbstd_group=2)
    G, G_ema = (randomize(GENERATORS.build("stylegan2", g), s) for s in (1, 2))
    D = randomize(DISCRIMINATORS.build("stylegan2", d), 3)
    out = convert(write_snapshot(tmp_path / "s.pkl", G, G_ema, D), tmp_path / "run")
    overrides = [f"run_dir={out}", "train.total_kimg=0.004", "train.batch_size=4", "log.progress=false",
                 "data.workers=0"]
    assert train(str(out / "config.yaml"), overrides)["step"] == 1
    text = capsys.readouterr().out
    assert "holds no optimizer state; D, G start with fresh optimizers" in text
    D2, _ = checkpoint.build_net(out / "checkpoints" / "step-00000001" / "D.safetensors")
    for k, v in D.state_dict().items():  # one Adam step of lr 0.0025 away from the converted weights
        assert (D2.state_dict()[k] - v).abs().max() < 0.02, k


def test_generator_only_conversion_refuses_to_resume(tmp_path):
    from hifigan.config import load_config
    from hifigan.train.state import check_same_model
    G, G_ema, D = rosinality_nets()
    src = tmp_path / "g_ema.pt"
    torch.save({"g_ema": to_rosinality_g(G_ema), "latent_avg": G_ema.mapping.w_avg}, src)
    out = convert(src, tmp_path / "run")
    with pytest.raises(UserError, match="without network D"):
        cfg = load_config(out / "config.yaml", ["D.arch=stylegan2", "D.resolution=16"])
        check_same_model(types.SimpleNamespace(cfg=cfg), checkpoint.resolve(out))
