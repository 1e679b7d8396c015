"""The protocol metrics (FID, KID, IS, precision/recall, PPL): agreement with torch-fidelity on the same
weights file, the estimators' math, the file formats, bad inputs, and a two-process run's metrics
equal to launch/metrics.py's on its checkpoint."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import ROOT, env1, latest_ckpt, run_script, torchrun_cmd
from hifigan.errors import UserError
from hifigan.metrics.inception import FIDInceptionV3, load_inception, tf1_resize_bilinear
from hifigan.metrics.isc import inception_score
from hifigan.metrics.kid import kernel_inception_distance, polynomial_mmd2
from hifigan.metrics.pr import precision_recall


def import_fidelity():
    """torch-fidelity 0.4.0 imports torchvision at import time; the registry's torchvision wheels are
    built against a CUDA torch and do not load beside the CPU one, and nothing compared here (the
    Inception extractor, FID, KID, IS, PRC) uses torchvision, so a placeholder stands in for it."""
    if "torchvision" not in sys.modules:
        tv = types.ModuleType("torchvision")
        tv.__path__ = []
        ds = types.ModuleType("torchvision.datasets")
        for n in ("CIFAR10", "CIFAR100", "STL10"):
            setattr(ds, n, type(n, (), {}))
        tr = types.ModuleType("torchvision.transforms")
        tr.__path__ = []
        fn = types.ModuleType("torchvision.transforms.functional")
        models = types.ModuleType("torchvision.models")
        tv.datasets, tv.transforms, tv.models, tr.functional = ds, tr, models, fn
        sys.modules.update({"torchvision": tv, "torchvision.datasets": ds, "torchvision.transforms": tr,
                            "torchvision.transforms.functional": fn, "torchvision.models": models})
    import torch_fidelity
    return torch_fidelity


# -- files the tests build ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A random-weight FID Inception in pytorch-fid's state-dict format (He init keeps a signal through
    the 94 layers; batch-norm statistics perturbed so eval-mode BN is not the identity)."""
    g = torch.Generator().manual_seed(0)
    net = FIDInceptionV3()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.data = torch.randn(m.running_mean.shape, generator=g) * 0.05
            m.running_var.data = 1 + 0.1 * torch.rand(m.running_var.shape, generator=g)
    net.fc.weight.data = torch.randn(net.fc.weight.shape, generator=g) * 3
    path = tmp_path_factory.mktemp("weights") / "pt_inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


def photo_crops(name: str, n: int, size: int, seed: int) -> np.ndarray:
    import skimage.data
    img = getattr(skimage.data, name)()
    rng = np.random.RandomState(seed)
    ys, xs = rng.randint(0, img.shape[0] - size, n), rng.randint(0, img.shape[1] - size, n)
    return np.stack([img[y:y + size, x:x + size] for y, x in zip(ys, xs)])  # uint8 [n, size, size, 3]


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    np.savez(root / "real.npz", images=photo_crops("astronaut", 10, 40, 0))
    np.savez(root / "fake.npz", images=photo_crops("coffee", 10, 40, 1))
    return root / "real.npz", root / "fake.npz"


class TinyInception(nn.Module):
    """A network with NVIDIA's TorchScript calling convention, small enough for a two-process run."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = nn.Parameter(torch.randn(3 * 16, 24, generator=g) / 7)
        self.fc = nn.Parameter(torch.randn(24, 10, generator=g))

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False):
        x = F.adaptive_avg_pool2d(img.float() / 127.5 - 1, 4).flatten(1)
        f = torch.tanh(x @ self.w)
        if return_features:
            return f
        return (f @ self.fc).softmax(1)


class TinyVGG(nn.Module):
    """NVIDIA's vgg16.pt calling convention: fc2 features, or LPIPS features of x in [0, 255]."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.w = nn.Parameter(torch.randn(3 * 64, 32, generator=g) / 14)

    def forward(self, img: torch.Tensor, return_features: bool = False, resize_images: bool = True,
                return_lpips: bool = False):
        x = F.adaptive_avg_pool2d(img.float() / 127.5 - 1, 8).flatten(1)
        f = torch.tanh(x @ self.w)
        if return_lpips:
            return f / f.square().sum(1, keepdim=True).sqrt() / 10
        return f


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    root = tmp_path_factory.mktemp("scripted")
    torch.jit.script(TinyInception()).save(str(root / "inception.pt"))
    torch.jit.script(TinyVGG()).save(str(root / "vgg16.pt"))
    return root / "inception.pt", root / "vgg16.pt"


# -- agreement with torch-fidelity ----------------------------------------------------------------
class _U8(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_launch_metrics_fid_and_kid_agree_with_torch_fidelity_on_the_same_weights(inception_file, image_sets):
    real, fake = image_sets
    r = run_script("metrics.py", "--real", real, "--fake", fake, "--metrics", "fid,kid", "--inception",
                   inception_file, "--kid-subset-size", "6", "--kid-subsets", "20", "--json")
    ours = json.loads(r.stdout)
    tf = import_fidelity()
    theirs = tf.calculate_metrics(
        input1=_U8(np.load(real)["images"]), input2=_U8(np.load(fake)["images"]), fid=True, kid=True,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(inception_file),
        kid_subset_size=6, kid_subsets=20, cuda=False, verbose=False, cache=False, batch_size=5)
    assert ours["fid"] > 1e-3 and ours["kid"] > 1e-6  # the sets differ: the comparison is not 0 vs 0
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3)


def test_features_equal_torch_fidelity_extractor(inception_file, tmp_path):
    tf = import_fidelity()
    ext = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                         feature_extractor_weights_path=str(inception_file))
    x = torch.from_numpy(photo_crops("chelsea", 2, 37, 3)).permute(0, 3, 1, 2).contiguous()
    pool, logits = ext(x)
    ours = load_inception(inception_file)
    assert torch.allclose(ours.pool(x), pool, rtol=1e-4, atol=1e-6)
    assert torch.allclose(ours.probs(x), logits.softmax(1).float(), rtol=1e-4, atol=1e-7)
    # the TorchScript format (NVIDIA's file, its calling convention): the same network traced and
    # saved loads through load_inception and computes the same features and probabilities
    ref = FIDInceptionV3()
    ref.load_state_dict(torch.load(inception_file, weights_only=True))
    with torch.no_grad():
        traced = torch.jit.trace(_PoolThenProbs(ref.eval()), (x,), check_trace=False)
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(_NvidiaConvention(traced)).save(str(path))
    scripted = load_inception(path)
    assert scripted.scripted
    assert torch.allclose(scripted.pool(x), ours.pool(x), rtol=1e-5, atol=1e-7)
    assert torch.allclose(scripted.probs(x), ours.probs(x), rtol=1e-4, atol=1e-6)


class _PoolThenProbs(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, img):
        f = self.net.pool(img)
        return f, self.net.logits_unbiased(f).softmax(1)


class _NvidiaConvention(nn.Module):
    def __init__(self, traced):
        super().__init__()
        self.traced = traced

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False):
        f, p = self.traced(img)
        return f if return_features else p


def test_kid_and_is_estimators_equal_torch_fidelitys():
    tf = import_fidelity()
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 16, generator=g), torch.randn(30, 16, generator=g) + 0.3
    theirs = kid_features_to_metric(a, b, kid_subsets=7, kid_subset_size=12, rng_seed=2020, verbose=False)
    mean, std = kernel_inception_distance(a.numpy(), b.numpy(), 7, 12, 2020)
    # the same subsets (same RandomState draws); they sum kernels in float32, we in float64
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-5)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-5)
    logits = torch.randn(50, 10, generator=g) * 2
    assert inception_score(logits.softmax(1).double().numpy(), 1)[0] == pytest.approx(
        isc_features_to_metric(logits, splits=1)["inception_score_mean"], rel=1e-9)
    assert tf.__version__ == "0.4.0"


# -- the estimators' math ------------------------------------------------------------------------
def test_kid_is_the_unbiased_u_statistic():
    g = np.random.RandomState(0)
    x, y = g.randn(6, 3), g.randn(6, 3) + 1
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_of_two_samples_of_one_distribution_averages_to_zero_where_the_biased_one_does_not():
    g = np.random.RandomState(1)
    unbiased, biased = [], []
    for _ in range(400):
        x, y = g.randn(10, 4), g.randn(10, 4)
        unbiased.append(polynomial_mmd2(x, y))
        k = lambda a, b: (a @ b.T / 4 + 1) ** 3  # noqa: E731
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    se = np.std(unbiased) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 3 * se          # E[estimate] = MMD^2 = 0
    assert np.mean(biased) > 10 * se                # the V-statistic is biased upward


def test_inception_score_is_the_class_count_for_confident_balanced_predictions_and_1_for_constant_ones():
    probs = np.eye(5)[np.arange(50) % 5] * 0.999 + 0.001 / 5
    assert inception_score(probs, 10)[0] == pytest.approx(5, rel=0.02)
    assert inception_score(np.full((50, 5), 0.2), 10) == pytest.approx((1.0, 0.0))


def test_precision_and_recall_count_points_inside_the_other_sets_k_nn_balls():
    real = np.array([[0.0, 0], [1, 0], [0, 1], [1, 1]])
    fake = np.array([[0.5, 0.5], [10, 10], [0.2, 0.1], [10.5, 10], [10, 10.5], [11, 11]])
    p, r = precision_recall(real, fake, k=1)
    # every real 1-NN radius is 1: (0.5, 0.5) and (0.2, 0.1) fall inside. The two fakes near the square have
    # radius 0.5; only (0, 0) lies within 0.5 of one of them (0.22 from (0.2, 0.1)).
    assert p == pytest.approx(2 / 6)
    assert r == pytest.approx(1 / 4)


def test_tf1_resize_samples_at_i_times_in_over_out_without_half_pixel_offsets():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    y = tf1_resize_bilinear(x, 8)
    assert torch.allclose(y[0, 0, 0], torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.0]))


# -- formats and bad inputs ----------------------------------------------------------------------
def test_scripted_inception_follows_nvidias_calling_convention(scripted):
    inc = load_inception(scripted[0])
    x = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    assert inc.scripted and inc.pool(x).shape == (3, 24) and torch.allclose(inc.probs(x).sum(1), torch.ones(3))


@pytest.mark.parametrize("case", ["missing", "not_weights", "vgg_as_inception", "no_images_key"])
def test_bad_inputs_exit_2_with_one_line(case, tmp_path, image_sets, scripted):
    real, fake = image_sets
    inc = tmp_path / "x.pth"
    if case == "not_weights":
        inc.write_bytes(b"\x80\x04garbage")
    elif case == "vgg_as_inception":
        torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, inc)
    elif case == "no_images_key":
        np.savez(tmp_path / "bad.npz", pictures=np.zeros((2, 8, 8, 3), np.uint8))
        fake, inc = tmp_path / "bad.npz", scripted[0]
    r = run_script("metrics.py", "--real", real, "--fake", fake, "--inception", inc, check=False)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "Traceback" not in r.stderr, r.stderr
    assert {"missing": "no such Inception weights file", "not_weights": "not a readable Inception-v3",
            "vgg_as_inception": "not the FID Inception-v3", "no_images_key": "no `images` array"}[case] in err[0]


def test_a_protocol_metric_without_its_weights_file_fails_before_training(tmp_path):
    from hifigan.config import load_config
    from hifigan.train.trainer import Trainer
    cfg = load_config(ROOT / "configs" / "mnist_dcgan.yaml", [f"run_dir={tmp_path}", "metrics=[fid50k_full]"])
    with pytest.raises(UserError, match="needs the FID Inception weights.*--inception"):
        Trainer(cfg)
    assert not (tmp_path / "checkpoints").exists()


# -- a two-process run's metrics equal launch/metrics.py's on its checkpoint ----------------------
def test_two_process_run_metrics_equal_launch_metrics_on_the_checkpoint(tmp_path, scripted, monkeypatch):
    import subprocess

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    inc, vgg = scripted
    names = ["fid50k_full", "kid50k_full", "is50k", "pr50k3_full", "ppl2_wend"]
    run = tmp_path / "run"
    opts = {"fid50k_full": f"{{inception: {inc}, samples: 24, max_real: 40, batch: 5}}",
            "kid50k_full": f"{{inception: {inc}, samples: 24, max_real: 40, subsets: 5, subset_size: 10}}",
            "is50k": f"{{inception: {inc}, samples: 24, splits: 3}}",
            "pr50k3_full": f"{{vgg: {vgg}, samples: 24, max_real: 40}}",
            "ppl2_wend": f"{{vgg: {vgg}, samples: 100, batch: 16}}"}
    o = [f"run_dir={run}", "log.progress=false", "log.grid_size=4", "train.threads=1", "train.batch_size=8",
         "train.total_kimg=0.016", "log.every_kimg=0.016", "log.image_every_kimg=1", "checkpoint.every_kimg=1",
         "train.ema_bn_batches=1", "data.resolution=16", "G.resolution=16", "D.resolution=16",
         "G.channel_base=128", "G.channel_max=16", "D.channel_base=128", "D.channel_max=16", "G.z_dim=16",
         "G.w_dim=16", "G.mapping_layers=2", f"metrics=[{','.join(names)}]",
         "log.metrics_every_kimg=0"] + [f"metric_options.{k}={v}" for k, v in opts.items()]
    cache = tmp_path / "cache"
    env = dict(env1(), HIFIGAN_CACHE_DIR=str(cache))
    r = subprocess.run(torchrun_cmd(2, "train.py", ROOT / "configs" / "stylegan2_mnist.yaml", *o), cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    ev = EventAccumulator(str(run / "tensorboard"))
    ev.Reload()
    logged = {t.split("/", 1)[1]: ev.Scalars(t)[-1].value for t in ev.Tags()["scalars"] if t.startswith("Metrics/")}
    assert set(logged) == {"fid50k_full", "kid50k_full", "is50k", "pr50k3_full_precision", "pr50k3_full_recall",
                           "ppl2_wend"}
    assert len(list((cache / "metrics").glob("*.npz"))) == 2  # real Inception and VGG features, cached once
    r = run_script("metrics.py", latest_ckpt(run), "--metrics", ",".join(names), "--json", env=env)
    after = json.loads(r.stdout)
    for k, v in logged.items():  # each batch holds the same samples on 2 ranks as on 1: equal to float32 storage
        assert np.float32(after[k]) == np.float32(v), (k, after[k], v)
    assert after["fid50k_full_samples"] == 24 and after["fid50k_full_real"] == 40


def test_real_features_read_every_shard_sample_once_and_come_from_the_cache_the_second_time(tmp_path, monkeypatch):
    from hifigan.config import DataConfig
    from hifigan.data.builtin import load_mnist
    from hifigan.data.pack import pack
    from hifigan.metrics.features import real_features
    monkeypatch.setenv("HIFIGAN_CACHE_DIR", str(tmp_path / "cache"))
    x, _ = load_mnist(None)
    digits = x[:40]                                           # uint8 [40, 28, 28]
    np.savez(tmp_path / "digits.npz", images=digits)
    pack(str(tmp_path / "digits.npz"), str(tmp_path / "shards"), progress=False, encoding="png", shard_samples=7)
    cfg = DataConfig(shards=str(tmp_path / "shards"), resolution=28)
    calls = []

    def fn(u8):  # features: the images themselves
        calls.append(len(u8))
        return u8[:, :1].flatten(1).double()
    feats = real_features(cfg, fn, "test-net", "identity")
    assert sum(calls) == 40 and feats.shape == (40, 28 * 28)
    assert sorted(map(bytes, feats.astype(np.uint8))) == sorted(map(bytes, digits.reshape(40, -1)))
    again = real_features(cfg, fn, "test-net", "identity")
    assert sum(calls) == 40 and np.array_equal(again, feats)  # cached: fn not called again
    assert real_features(cfg, fn, "other-net", "identity").shape == (40, 784) and sum(calls) == 80
