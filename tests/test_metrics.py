"""The mnist_fd metric: the Frechet distance math, coverage and conditional agreement on stand-in
generators that return real digits, the classifier cache, training-time logging and launch/metrics.py.

Every classifier here lives in a temporary cache folder (HIFIGAN_CACHE_DIR), never the real one."""
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from hifigan.config import load_config
from hifigan.errors import UserError
from hifigan.metrics import build_metrics, evaluate, format_lines, metrics_from_checkpoint
from hifigan.metrics import mnist_classifier as mc
from hifigan.metrics.mnist_fd import frechet_distance, gaussian_fit
from hifigan.train.trainer import Trainer
from conftest import ROOT, latest_ckpt, read_weights, run_script, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = dict(mc.RECIPE, epochs=1)  # the cache tests train this short recipe at 16x16 (well under a second)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The metric's own classifier (full recipe, 32x32), trained once into a temporary cache."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(mc.CACHE_ENV, str(root))
        clf = mc.load_classifier(32, 0)
        yield clf


# -- the Frechet distance -----------------------------------------------------------------------

@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_fd_of_a_set_with_itself_is_zero(method):
    x = np.random.default_rng(0).normal(size=(3000, 32)) @ np.random.default_rng(1).normal(size=(32, 32))
    fit = gaussian_fit(x)
    assert frechet_distance(fit, fit, method) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_fd_matches_the_closed_form_for_known_gaussians(method):
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 1.0])
    d1, d2 = np.diag([4.0, 0.25]), np.diag([1.0, 9.0])  # commuting: sum (sqrt(a) - sqrt(b))^2
    expect = 0.25 + 9.0 + (2 - 1) ** 2 + (0.5 - 3) ** 2
    assert frechet_distance((mu1, d1), (mu2, d2), method) == pytest.approx(expect, rel=1e-10)
    a, b = np.array([[2.0, 0.8], [0.8, 1.0]]), np.array([[1.0, -0.3], [-0.3, 3.0]])  # not commuting
    # for 2x2 M = AB with eigenvalues l1, l2 > 0: tr sqrt(M) = sqrt(l1) + sqrt(l2) = sqrt(tr M + 2 sqrt(det M))
    tr_sqrt = np.sqrt(np.trace(a @ b) + 2 * np.sqrt(np.linalg.det(a) * np.linalg.det(b)))
    expect = 9.25 + np.trace(a) + np.trace(b) - 2 * tr_sqrt
    assert frechet_distance((mu1, a), (mu2, b), method) == pytest.approx(expect, rel=1e-10)


def test_fd_of_samples_approaches_the_fd_of_their_gaussians():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200_000, 3)), rng.normal(size=(200_000, 3)) * 2 + 1
    assert frechet_distance(gaussian_fit(a), gaussian_fit(b)) == pytest.approx(3 * 1 + 3 * (2 - 1) ** 2, rel=0.02)


# -- coverage and conditional agreement on stand-in generators ----------------------------------

class RealDigitsG(nn.Module):
    """A stand-in G that returns real digits, in order: from `classes` only (unconditional), or of
    the requested class + `shift` (conditional)."""

    def __init__(self, classes=range(10), conditional=False, shift=0):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives sampling a device
        u8, y, _ = mc.real_digits(32)
        keep = torch.isin(y, torch.tensor(list(classes)))
        self.pool = mc.to_input(u8[keep])  # [n, 1, 32, 32]
        self.by_class = [mc.to_input(u8[y == k]) for k in range(10)]
        self.z_dim, self.num_classes, self.img_shape = 4, 10 if conditional else 0, (1, 32, 32)
        self.shift, self.served = shift, 0

    def forward(self, z, c=None):
        n, start = len(z), self.served
        self.served += n
        if c is None:
            return self.pool[torch.arange(start, start + n) % len(self.pool)]
        k = (c + self.shift) % 10
        return torch.stack([self.by_class[int(k[i])][(start + i) // 10 % 500] for i in range(n)])


def _measure(G, samples):
    return evaluate(build_metrics(["mnist_fd"], samples, G), G)


def test_the_real_digits_as_samples_have_fd_zero_and_full_coverage(cache):
    r = _measure(RealDigitsG(), 5000)  # exactly the 5,000 reference digits, through uint8 and back
    assert r.scalars["mnist_fd"] == pytest.approx(0.0, abs=1e-3)
    assert r.scalars["mnist_coverage"] == 10 and "mnist_cond_acc" not in r.scalars
    assert r.details["mnist_fd_floor"] > 0 and r.details["mnist_classifier_acc"] == cache.held_out_acc


def test_a_generator_of_three_classes_covers_three_and_is_far_from_the_data(cache):
    r = _measure(RealDigitsG(classes=(1, 4, 7)), 1500)
    assert r.scalars["mnist_coverage"] == 3
    hist = np.array(r.details["mnist_class_hist"])
    assert hist[[1, 4, 7]].sum() > 0.97 and hist.sum() == pytest.approx(1.0)
    assert r.scalars["mnist_fd"] > 5 * r.details["mnist_fd_floor"]


def test_cond_acc_measures_agreement_with_the_requested_class(cache):
    right = _measure(RealDigitsG(conditional=True), 500).scalars["mnist_cond_acc"]
    assert cache.held_out_acc - 0.03 <= right <= 1.0  # mostly digits the classifier trained on
    wrong = _measure(RealDigitsG(conditional=True, shift=1), 500).scalars["mnist_cond_acc"]
    assert wrong < 0.05


def test_a_colour_generator_is_refused_before_training():
    G = RealDigitsG()
    G.img_shape = (3, 32, 32)
    with pytest.raises(UserError, match="1-channel"):
        build_metrics(["mnist_fd"], 10, G)


# -- the classifier cache -----------------------------------------------------------------------

def _weights(clf):
    return {k: v.clone() for k, v in clf.net.state_dict().items()}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """A short-recipe classifier (seed 0, 16x16), trained once into its own cache folder."""
    root = tmp_path_factory.mktemp("quick")
    return mc.load_classifier(16, 0, root=root, recipe=QUICK, verbose=False)


def test_a_second_call_loads_from_the_cache_instead_of_training(quick):
    again = mc.load_classifier(16, 0, root=quick.path.parent, recipe=QUICK, verbose=False)
    assert quick.trained and not again.trained and again.path == quick.path
    assert all(torch.equal(v, _weights(again)[k]) for k, v in _weights(quick).items())
    assert again.fd_floor == quick.fd_floor and np.array_equal(again.real_sigma, quick.real_sigma)


def test_training_twice_with_the_same_seed_gives_identical_weights(quick, tmp_path):
    torch.set_num_threads(2)  # the classifier trains on one thread whatever the caller's setting
    try:
        b = mc.load_classifier(16, 0, root=tmp_path, recipe=QUICK, verbose=False)
    finally:
        torch.set_num_threads(1)
    assert b.trained and b.path.name == quick.path.name
    assert all(torch.equal(v, _weights(b)[k]) for k, v in _weights(quick).items())
    assert b.held_out_acc == quick.held_out_acc > 0.5


def test_a_different_seed_or_recipe_uses_a_different_file(quick, tmp_path):
    s1 = mc.load_classifier(16, 1, root=tmp_path, recipe=QUICK, verbose=False)
    assert s1.trained and s1.path.name != quick.path.name
    assert any(not torch.equal(v, _weights(s1)[k]) for k, v in _weights(quick).items())
    assert mc.cache_path(16, 0, dict(QUICK, lr=2e-3), tmp_path).name != quick.path.name
    assert mc.cache_path(32, 0, QUICK, tmp_path).name != quick.path.name


def test_a_first_use_inside_no_grad_still_trains_the_classifier(tmp_path):
    with torch.no_grad():  # the metric's evaluation runs under no_grad and may train on first use
        c = mc.load_classifier(16, 0, root=tmp_path, recipe=QUICK, verbose=False)
    assert c.trained and c.held_out_acc > 0.5


def test_a_corrupt_cache_file_is_retrained_with_a_one_line_warning(quick, tmp_path, capsys):
    path = tmp_path / quick.path.name
    raw = quick.path.read_bytes()
    for damaged in (raw[:-100] + bytes([raw[-100] ^ 0xFF]) + raw[-99:],  # in the tensor data: the checksum tells
                    raw[:len(raw) // 2]):  # truncated: safetensors cannot read it
        path.write_bytes(damaged)
        capsys.readouterr()
        again = mc.load_classifier(16, 0, root=tmp_path, recipe=QUICK, verbose=False)
        err = capsys.readouterr().err.strip().splitlines()
        assert again.trained and len(err) == 1 and "corrupt" in err[0] and "retraining" in err[0]
        assert all(torch.equal(v, _weights(again)[k]) for k, v in _weights(quick).items())
        assert not mc.load_classifier(16, 0, root=tmp_path, recipe=QUICK, verbose=False).trained  # rewritten


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(mc.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mc.cache_dir() == tmp_path / "xdg" / "hifigan"
    monkeypatch.setenv(mc.CACHE_ENV, str(tmp_path / "own"))
    assert mc.cache_path(32, 0).parent == tmp_path / "own"


# -- training-time logging and launch/metrics.py ------------------------------------------------

def _tiny(run, metrics: bool, dcgan_cfg):
    extra = {"train.total_kimg": 0.064, "log.every_kimg": 0.032, "log.image_every_kimg": 1,
             "checkpoint.every_kimg": 1, "train.ema_kimg": 0.01}
    if metrics:
        extra.update({"metrics": "[mnist_fd]", "log.metric_samples": 200, "log.metrics_every_kimg": 0.032})
    return Trainer(load_config(dcgan_cfg, tiny_overrides(run, **extra)))


@pytest.fixture(scope="module")
def metric_run(cache, tmp_path_factory):
    """A tiny DCGAN run with metrics=[mnist_fd] (and the same run without, for comparison)."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(mc.CACHE_ENV, str(cache.path.parent))
        cfg = str(ROOT / "configs" / "mnist_dcgan.yaml")
        _tiny(root / "with", True, cfg).run()
        _tiny(root / "without", False, cfg).run()
        yield root


def test_training_logs_metrics_to_tensorboard(metric_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ev = EventAccumulator(str(metric_run / "with" / "tensorboard"))
    ev.Reload()
    tags = ev.Tags()["scalars"]
    assert {"Metrics/mnist_fd", "Metrics/mnist_coverage"} <= set(tags) and "Metrics/mnist_cond_acc" not in tags
    fd = ev.Scalars("Metrics/mnist_fd")
    assert [e.step for e in fd] == [32, 64] and all(e.value > 0 for e in fd)  # every 0.032 kimg, and the end
    assert all(0 <= e.value <= 10 for e in ev.Scalars("Metrics/mnist_coverage"))


def test_metrics_leave_training_unchanged(metric_run):
    a, b = latest_ckpt(metric_run / "with"), latest_ckpt(metric_run / "without")
    for net in ("G_ema", "G", "D"):
        wa, wb = read_weights(a / f"{net}.safetensors"), read_weights(b / f"{net}.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), net


def test_launch_metrics_prints_the_figures_of_a_checkpoint(metric_run, cache):
    assert os.environ[mc.CACHE_ENV] == str(cache.path.parent)  # the subprocess finds the cached classifier
    r = run_script("metrics.py", metric_run / "with", "--samples", "300")
    figures = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert int(figures["mnist_samples"]) == 300 and float(figures["mnist_fd"]) > 0
    assert 0 <= int(figures["mnist_coverage"]) <= 10 and len(figures["mnist_class_hist"].split()) == 10
    assert float(figures["mnist_classifier_acc"]) == pytest.approx(cache.held_out_acc, abs=1e-4)
    as_json = json.loads(format_lines(metrics_from_checkpoint(metric_run / "with", samples=300), as_json=True))
    assert as_json["mnist_fd"] == pytest.approx(float(figures["mnist_fd"]), abs=1e-3)


def test_launch_metrics_on_a_bad_path_exits_2_with_one_line(tmp_path):
    r = run_script("metrics.py", tmp_path / "missing", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no such file" in r.stderr


def test_an_unknown_metric_name_is_a_one_line_config_error(dcgan_cfg, tmp_path):
    with pytest.raises(UserError, match=r"metrics\.0: unknown metric 'mnist_fid' \(did you mean 'mnist_fd'"):
        load_config(dcgan_cfg, tiny_overrides(tmp_path, metrics="[mnist_fid]"))
