import pytest

from hifigan.config import Config, dump, load_config
from hifigan.errors import UserError


def test_recipe_loads_and_resolves(dcgan_cfg):
    cfg = load_config(dcgan_cfg)
    assert isinstance(cfg, Config)
    assert cfg.G.name == "dcgan" and cfg.G.z_dim == 100
    assert cfg.optim["G"].betas == (0.5, 0.999) and cfg.optim["D"].lr == pytest.approx(2e-4)
    assert cfg.run_dir.endswith("mnist_dcgan")


def test_unknown_key_suggests_the_right_one(dcgan_cfg):
    with pytest.raises(UserError, match=r"command line: train\.bach_size: unknown key \(did you mean train\.batch_size\?\)"):
        load_config(dcgan_cfg, ["train.bach_size=3"])


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("train: {bach_size: 3}\n")
    with pytest.raises(UserError, match=r"x\.yaml: train\.bach_size: unknown key \(did you mean train\.batch_size\?\)"):
        load_config(p)


def test_typo_inside_a_network_section_is_caught_by_its_schema(dcgan_cfg):
    with pytest.raises(UserError, match=r"G\.z_dimm: unknown key \(did you mean G\.z_dim\?\)"):
        load_config(dcgan_cfg, ["G.z_dimm=5"])


def test_unknown_architecture_lists_known_ones(dcgan_cfg):
    with pytest.raises(UserError, match=r"unknown generator 'dcgann' \(did you mean 'dcgan'\?"):
        load_config(dcgan_cfg, ["G.arch=dcgann"])


def test_wrong_type_is_rejected(dcgan_cfg):
    with pytest.raises(UserError, match=r"train\.batch_size: expected an integer, got 'abc'"):
        load_config(dcgan_cfg, ["train.batch_size=abc"])
    with pytest.raises(UserError, match=r"train\.total_kimg: expected a number"):
        load_config(dcgan_cfg, ["train.total_kimg=lots"])


def test_choices_are_enforced(dcgan_cfg):
    with pytest.raises(UserError, match=r"train\.mixed_precision: 'fp8' is not allowed"):
        load_config(dcgan_cfg, ["train.mixed_precision=fp8"])


def test_missing_file():
    with pytest.raises(UserError, match="config file not found"):
        load_config("configs/does_not_exist.yaml")


def test_overrides_apply_and_floats_without_a_dot_parse(dcgan_cfg):
    cfg = load_config(dcgan_cfg, ["train.batch_size=128", "optim.G.lr=1e-3", "run_dir=/tmp/x", "seed=7",
                                  "phases.0.repeats=5"])
    assert cfg.train.batch_size == 128 and cfg.optim["G"].lr == 1e-3
    assert cfg.run_dir == "/tmp/x" and cfg.seed == 7 and cfg.phases[0].repeats == 5


def test_resolved_config_round_trips(dcgan_cfg, tmp_path):
    cfg = load_config(dcgan_cfg, ["train.batch_size=32"])
    p = tmp_path / "resolved.yaml"
    p.write_text(dump(cfg))
    again = load_config(p)
    assert dump(again) == dump(cfg)


def test_invalid_network_value_reports_the_key_or_the_section(dcgan_cfg):
    """A single field's range names its key; a check across fields (the Config's own) names the section."""
    with pytest.raises(UserError, match=r"command line: G\.resolution: must be a power of two >= 8, got 30"):
        load_config(dcgan_cfg, ["G.resolution=30"])
    with pytest.raises(UserError, match=r"command line: G: z_dim \(5\) must hold the codes"):
        load_config(dcgan_cfg, ["G.z_dim=5", "G.code_cat=10"])


def test_a_key_of_a_default_section_alone_keeps_the_default_entry(dcgan_cfg):
    """backend.find_unused_parameters=... without backend.name selects the default backend, and a bad
    value there is a one-line error about that key."""
    cfg = load_config(dcgan_cfg, ["backend.find_unused_parameters=true"])
    assert cfg.backend.name == "accelerate" and cfg.backend.find_unused_parameters is True
    with pytest.raises(UserError, match="command line: backend.find_unused_parameters: expected true or false"):
        load_config(dcgan_cfg, ["backend.find_unused_parameters=maybe"])
