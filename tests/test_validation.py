"""Bad input fails up front, in one bounded line that names the key: non-finite and out-of-range numbers
in every section (run schema and every registered Config), huge values in messages, YAML alias bombs,
files that are not YAML recipes, and networks too large for the machine (estimated on the meta device)."""
from __future__ import annotations

import json
import time

import pytest
import torch

from conftest import ROOT, run_script
from hifigan import budget, checkpoint, registry
from hifigan.config import load_config
from hifigan.errors import UserError
from hifigan.schema import short
from hifigan.train.trainer import build_nets

MAX_LEN = 320  # no message below quotes more than a bounded repr of a value


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert len(msg) <= MAX_LEN, f"{len(msg)} chars: {msg[:400]}"
    return msg


# ----------------------------------------------------------------------------------------------
# The run schema: overrides on a recipe

@pytest.mark.parametrize("override, key, what", [
    ("train.total_kimg=nan", "train.total_kimg", "not a finite number"),
    ("train.total_kimg=.inf", "train.total_kimg", "not a finite number"),
    ("train.total_kimg=-.inf", "train.total_kimg", "not a finite number"),
    ("train.total_kimg=1e999", "train.total_kimg", "not a finite number"),
    ("train.total_kimg=0", "train.total_kimg", "(allowed: a number in (0, "),
    ("optim.G.lr=-1", "optim.G.lr", "(allowed: a number >= 0)"),
    ("optim.D.lr=nan", "optim.D.lr", "not a finite number"),
    ("optim.G.betas=[0.5, 1.0]", "optim.G.betas.1", "(allowed: a number in [0, 1))"),
    ("optim.D.betas=[-0.1, 0.9]", "optim.D.betas.0", "(allowed: a number in [0, 1))"),
    ("optim.G.eps=0", "optim.G.eps", "> 0"),
    ("optim.G.momentum=-0.5", "optim.G.momentum", "[0, 1)"),
    ("optim.D.weight_decay=-1", "optim.D.weight_decay", ">= 0"),
    ("optim.D.grad_clip=0", "optim.D.grad_clip", "> 0"),
    ("optim.D.weight_clip=-0.01", "optim.D.weight_clip", "> 0"),
    ("train.batch_size=0", "train.batch_size", "an integer in [1, "),
    ("train.batch_size=-64", "train.batch_size", "an integer in [1, "),
    ("train.batch_gpu=0", "train.batch_gpu", "an integer in [1, "),
    ("train.ema_kimg=-1", "train.ema_kimg", "[0, "),
    ("train.threads=0", "train.threads", "[1, 4096]"),
    ("seed=-1", "seed", "[0, 2147483647]"),
    ("seed=100000000000000000000000000000", "seed", "64-bit integer"),
    ("data.resolution=65536", "data.resolution", "8192 is the largest resolution"),
    ("data.workers=-1", "data.workers", "[0, 1024]"),
    ("log.grid_size=0", "log.grid_size", "[1, 1024]"),
    ("log.grid_size=1000000", "log.grid_size", "[1, 1024]"),
    ("log.every_kimg=0", "log.every_kimg", "(0, "),
    ("log.image_every_kimg=-5", "log.image_every_kimg", "(0, "),
    ("checkpoint.every_kimg=0", "checkpoint.every_kimg", "(0, "),
    ("checkpoint.keep=0", "checkpoint.keep", "[1, "),
    ("phases.0.repeats=0", "phases.0.repeats", "[1, "),
    ("G.resolution=65536", "G.resolution", "a power of two in [8, 8192]; 8192 is the largest resolution"),
    ("G.resolution=48", "G.resolution", "must be a power of two >= 8, got 48"),
    ("G.z_dim=-1", "G.z_dim", "[1, 65536]"),
    ("G.init_std=nan", "G.init_std", "not a finite number"),
    ("D.width=0", "D.width", "[1, 65536]"),
])
def test_bad_number_in_the_run_schema_is_one_line_naming_the_key(dcgan_cfg, override, key, what):
    msg = one_line_error(load_config, dcgan_cfg, [override])
    assert msg.startswith(f"command line: {key}: ") and what in msg, msg


# ----------------------------------------------------------------------------------------------
# Every registered Config: sizes of several networks, objectives' weights, in a bare mapping

@pytest.mark.parametrize("section, body, key, what", [
    ("G", {"arch": "dcgan", "z_dim": 0}, "G.z_dim", "[1, 65536]"),
    ("G", {"arch": "dcgan", "channels": -3}, "G.channels", "[1, 16]"),
    ("G", {"arch": "mlp", "hidden": [64, -1]}, "G.hidden.1", "[1, 65536]"),
    ("G", {"arch": "mlp", "num_classes": -1}, "G.num_classes", "[0, 65536]"),
    ("G", {"arch": "progan", "resolution": 65536}, "G.resolution", "8192 is the largest resolution"),
    ("G", {"arch": "progan", "channel_max": 0}, "G.channel_max", "[1, 65536]"),
    ("G", {"arch": "stylegan1", "mapping_layers": 0}, "G.mapping_layers", "[1, 64]"),
    ("G", {"arch": "stylegan1", "w_avg_beta": 1.5}, "G.w_avg_beta", "[0, 1]"),
    ("G", {"arch": "stylegan2", "w_dim": -512}, "G.w_dim", "[1, 65536]"),
    ("G", {"arch": "stylegan2", "conv_clamp": float("inf")}, "G.conv_clamp", "not a finite number"),
    ("G", {"arch": "stylegan2", "num_fp16_res": -1}, "G.num_fp16_res", "[0, 16]"),
    ("D", {"arch": "stylegan2", "mbstd_group": 0}, "D.mbstd_group", "[1, 65536]"),
    ("D", {"arch": "mlp", "dropout": 1.0}, "D.dropout", "[0, 1)"),
    ("D", {"arch": "dcgan", "aux_classes": -1}, "D.aux_classes", "[0, 65536]"),
    ("D", {"arch": "autoencoder", "code_dim": 0}, "D.code_dim", "[1, 65536]"),
    ("D", {"arch": "progan", "resolution": 0}, "D.resolution", "[4, 8192]"),
    ("C", {"arch": "mlp", "classes": 1}, "C", "classes must be >= 2"),  # richer rules: the Config's own check
    ("C", {"arch": "dcgan", "classes": 100_000}, "C.classes", "<= 65536"),
    ("Q", {"arch": "dcgan", "q_cont": -2}, "Q", "q_cat must be 0 or >= 2 and q_cont >= 0"),
    ("Q", {"arch": "mlp", "q_cat": 10 ** 6}, "Q.q_cat", "<= 65536"),
    ("E", {"arch": "dcgan", "z_dim": 0}, "E.z_dim", "[1, 65536]"),
    ("objective", {"name": "stylegan", "r1_every": 0}, "objective.r1_every", "[1, "),
    ("objective", {"name": "wgan_gp", "gp_lambda": -10}, "objective.gp_lambda", ">= 0"),
    ("objective", {"name": "vae", "sigma": 0}, "objective.sigma", "> 0"),
    ("objective", {"name": "lsgan", "a": float("nan")}, "objective.a", "not a finite number"),
    ("objective", {"name": "gan", "label_smoothing": 1.0}, "objective.label_smoothing", "[0, 1)"),
])
def test_bad_number_in_a_registered_config_is_one_line_naming_the_key(section, body, key, what):
    msg = one_line_error(load_config, None, mapping={section: body})
    assert msg.startswith(f"config: {key}: ") and what in msg, msg


def test_a_metric_config_is_checked_the_same_way():
    with pytest.raises(UserError, match=r"^samples: 1 is out of range \(allowed: an integer in \[2, "):
        registry.METRICS.config("mnist_fd", {"samples": 1})


# ----------------------------------------------------------------------------------------------
# Bounded reprs: a huge value never floods the message

@pytest.mark.parametrize("mapping, key", [
    ({"train": {"batch_size": "x" * 100_000}}, "train.batch_size"),
    ({"train": {"batch_size": 10 ** 5000}}, "train.batch_size"),
    ({"train": {"total_kimg": 10 ** 5000}}, "train.total_kimg"),
    ({"G": {"arch": "y" * 100_000}}, "G.arch"),
    ({"G": {"arch": ["dcgan"] * 10_000}}, "G.arch"),
    ({"metrics": ["m" * 100_000]}, "metrics.0"),
    ({"train": {"k" * 100_000: 1}}, "train.kkkk"),
    ({"progressive": {"lr": {"9" * 5000: 0.1}}}, "progressive.lr.9999"),
    ({"optim": "z" * 100_000}, "optim"),
])
def test_a_huge_value_gives_a_bounded_one_line_message(mapping, key):
    assert one_line_error(load_config, None, mapping=mapping).startswith(f"config: {key}")


def test_short_is_bounded_for_any_value():
    class Loud:
        def __repr__(self):
            raise RuntimeError("no repr")
    for value in ("q" * 10 ** 6, 10 ** 10000, [list(range(1000))] * 1000, {"a\nb": "c\r\n" * 100}, Loud()):
        text = short(value)
        assert len(text) <= 80 and "\n" not in text and "\r" not in text


# ----------------------------------------------------------------------------------------------
# Files that are not YAML recipes

def _bomb(depth=9, width=9) -> str:
    """The classic 'billion laughs', under a key the schema knows: each item of `metrics` lists the
    previous one `width` times, so the last expands to 9^9 values."""
    lines = ["metrics:", "- &a0 [" + ",".join(["lol"] * width) + "]"]
    for i in range(1, depth):
        lines.append(f"- &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name, content, what", [
    ("bomb.yaml", _bomb(), "expands to more than 100,000 values through YAML aliases"),
    ("recursive.yaml", "metrics: &x [1, *x]\n", "a YAML alias refers to a node that contains it"),
    ("binary.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "not a text YAML file (byte 0x89 at offset 0"),
    ("latin1.yaml", "seed: 1  # caf\xe9\n".encode("latin-1"), "not a text YAML file (byte 0xe9"),
    ("empty.yaml", "", "empty config; start from a recipe in configs/ (e.g. configs/mnist_dcgan.yaml)"),
    ("comments.yaml", "# nothing here\n\n   # still nothing\n", "empty config; start from a recipe in configs/"),
    ("nul.yaml", "seed: 1\x00\n", "not valid YAML"),
    ("tab.yaml", "seed:\t\t- [\n", "not valid YAML at line 1"),
    ("deep.yaml", "metrics: " + "[" * 3000 + "]" * 3000 + "\n", "nested"),
    ("bigint.yaml", "seed: " + "9" * 5000 + "\n", "not a usable YAML recipe"),
    ("list.yaml", "- 1\n- 2\n", "expected a mapping of keys at the top level"),
    ("huge.yaml", "seed: 1\n" + "#" * (1 << 20), "too large for a config file"),
])
def test_a_file_that_is_not_a_recipe_is_one_line(tmp_path, name, content, what):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    t0 = time.monotonic()
    msg = one_line_error(load_config, p)
    assert time.monotonic() - t0 < 5, "must fail fast"
    assert msg.startswith(f"{p}: ") and what in msg, msg


def test_the_schema_and_its_messages_never_walk_an_expanded_alias_tree():
    """Defence in depth: past the expansion limit, validating and quoting the shared (unexpanded) tree
    that PyYAML builds touches only what a message prints."""
    import yaml
    from hifigan.config import Config, _Loader
    from hifigan.schema import ConfigError, from_mapping
    tree = yaml.load(_bomb(), Loader=_Loader)  # PyYAML's own tree: aliases are shared objects
    assert len(_bomb().encode()) < 450
    t0 = time.monotonic()
    assert len(short(tree["metrics"][-1])) <= 80  # 9^9 values behind it
    tree["metrics"].reverse()
    with pytest.raises(ConfigError, match=r"^metrics\.0: expected a string, got \[\[\[\["):
        from_mapping(Config, tree)
    assert time.monotonic() - t0 < 1


def test_every_yaml_text_hifigan_parses_is_bounded():
    """config.loads is the one YAML parser (recipes, overrides, the config saved in a checkpoint's state)."""
    from hifigan.config import loads
    assert one_line_error(loads, _bomb(), "ckpt/state.pt").startswith("ckpt/state.pt: expands to more than 100,000")
    assert loads("optim: {G: &o {lr: 1}, D: *o}")["optim"]["D"] == {"lr": 1}


def test_a_folder_or_an_unreadable_file_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "x.yaml"
    folder.mkdir()
    assert "is a folder, not a config file" in one_line_error(load_config, folder)
    p = tmp_path / "locked.yaml"
    p.write_text("seed: 1\n")

    def refuse(*a, **kw):
        raise PermissionError(13, "Permission denied", str(p))
    import hifigan.config as config_mod
    monkeypatch.setattr(config_mod, "open", refuse, raising=False)
    msg = one_line_error(load_config, p)
    assert msg.startswith(f"{p}: cannot read the config file (Permission denied)"), msg


def test_aliases_are_expanded_into_independent_copies(tmp_path):
    """An override of an aliased value changes that key only (PyYAML shares aliased nodes)."""
    p = tmp_path / "a.yaml"
    p.write_text("optim: {G: &o {lr: 0.001}, D: *o}\n")
    cfg = load_config(p, ["optim.G.lr=0.002"])
    assert cfg.optim["G"].lr == 0.002 and cfg.optim["D"].lr == 0.001


def test_an_override_value_is_bounded_too(dcgan_cfg):
    bomb = "[" + ",".join(["&a [" + ",".join(["1"] * 400) + "]"] + ["*a"] * 400) + "]"
    assert "expands to more than" in one_line_error(load_config, dcgan_cfg, [f"metrics={bomb}"])


# ----------------------------------------------------------------------------------------------
# Memory estimate on the meta device

NETWORK_ARCHS = [(section, arch) for section, reg in registry.NETWORKS.items() for arch in reg.names()]


@pytest.mark.parametrize("section, arch", NETWORK_ARCHS)
def test_every_registered_network_builds_on_the_meta_device(section, arch):
    cls = registry.NETWORKS[section].get(arch)
    net = budget.build_on_meta(cls, cls.Config())
    assert net is not None and budget.tensor_bytes(net) > 0
    assert all(t.device.type == "meta" for t in [*net.parameters(), *net.buffers()])


def test_a_network_that_cannot_build_on_meta_gives_no_estimate():
    class NumpyNet(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.table = torch.nn.Parameter(torch.empty(3).numpy())  # meta tensors have no data
    assert budget.build_on_meta(NumpyNet, None) is None


def test_a_network_too_large_for_the_machine_fails_before_allocating():
    cfg = load_config(None, mapping={"G": {"arch": "mlp", "hidden": [65536] * 3, "resolution": 8192, "channels": 16},
                                     "D": {"arch": "mlp"}})
    msg = one_line_error(build_nets, cfg)
    assert msg.startswith("G (mlp, resolution 8192): would need at least ") and "TiB" in msg, msg
    assert "lower G.resolution, G.hidden" in msg


def test_the_estimate_counts_training_state_against_the_available_memory(dcgan_cfg, monkeypatch):
    cfg = load_config(dcgan_cfg)
    G = budget.build_on_meta(registry.GENERATORS.get("dcgan"), cfg.G.cfg)
    weights = budget.tensor_bytes(G)
    monkeypatch.setattr(budget, "total_memory", lambda device: 4 * weights)  # holds G, not G's training
    msg = one_line_error(build_nets, cfg)
    assert msg.startswith("G (dcgan, resolution 32): would need at least ") and "to train" in msg, msg
    assert "2 optimizer moments, G_ema" in msg and "lower G.resolution, G.width" in msg


def test_the_estimate_leaves_the_weights_unchanged(dcgan_cfg):
    cfg = load_config(dcgan_cfg, ["G.width=8", "D.width=8"])
    nets = build_nets(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        G = registry.GENERATORS.get("dcgan")(cfg.G.cfg)
    for k, v in G.state_dict().items():
        assert torch.equal(v, nets["G"].state_dict()[k]), k


# ----------------------------------------------------------------------------------------------
# A checkpoint file whose metadata asks for something absurd

def _net_file(path, arch, net_config, tensors=None, kind="generator"):
    from safetensors.torch import save_file
    md = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "role": "G", "kind": kind, "arch": arch,
          "net_config": net_config if isinstance(net_config, str) else json.dumps(net_config)}
    save_file(tensors or {"x": torch.zeros(1)}, str(path), metadata=md)
    return path


@pytest.mark.parametrize("arch, net_config, what", [
    ("mlp", {"hidden": [65536] * 3, "resolution": 8192, "channels": 16}, "would need at least"),
    ("stylegan2", {"resolution": 65536}, "resolution: 65536 is out of range"),
    ("dcgan", '{"init_std": NaN}', "init_std: nan is not a finite number"),
    ("dcgan", '{"z_dim": ' + "9" * 5000 + "}", "does not fit this hifigan"),
    ("dcgan", "[" * 100_000, "does not fit this hifigan"),
    ("dcgan", {"width": 8, "resolution": 8}, "tensor "),
])
def test_absurd_checkpoint_metadata_is_one_line_before_allocating(tmp_path, arch, net_config, what):
    msg = one_line_error(checkpoint.build_net, _net_file(tmp_path / "G.safetensors", arch, net_config))
    assert what in msg, msg


def test_tensor_shapes_are_compared_with_the_files_own_config(tmp_path):
    cls = registry.GENERATORS.get("dcgan")
    G = cls(cls.Config(z_dim=100, width=8, resolution=8))
    path = _net_file(tmp_path / "G.safetensors", "dcgan", {"z_dim": 50, "width": 8, "resolution": 8},
                     checkpoint.net_tensors(G))
    msg = one_line_error(checkpoint.build_net, path)
    assert "tensor 'net.0.weight' is (100, 8, 4, 4) in the file but (50, 8, 4, 4) for its own config" in msg, msg
    ok = _net_file(tmp_path / "ok.safetensors", "dcgan", {"z_dim": 100, "width": 8, "resolution": 8},
                   checkpoint.net_tensors(G))
    net, _ = checkpoint.build_net(ok)
    assert torch.equal(net.state_dict()["net.0.weight"], G.state_dict()["net.0.weight"])


# ----------------------------------------------------------------------------------------------
# End to end: the entry script exits 2 with one line on stderr and no traceback

@pytest.mark.parametrize("args, what", [
    (["configs/mnist_dcgan.yaml", "train.total_kimg=nan"], "train.total_kimg: nan is not a finite number"),
    (["{tmp}/bomb.yaml"], "expands to more than 100,000 values"),
    (["configs/mnist_gan.yaml", "G.hidden=[65536,65536,65536]", "G.resolution=8192", "G.channels=16"],
     "G (mlp, resolution 8192): would need at least"),
])
def test_train_dry_run_exits_2_with_one_line(tmp_path, args, what):
    (tmp_path / "bomb.yaml").write_text(_bomb())
    args = [a.format(tmp=tmp_path) for a in args]
    r = run_script("train.py", *args, "--dry-run", f"run_dir={tmp_path / 'run'}", check=False, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and what in lines[0], r.stderr[-2000:]
    assert len(lines[0]) <= MAX_LEN + len("error: ")
    assert not (tmp_path / "run").exists()
