"""ADA in training: the p controller's step, every image D sees goes through the policy (Gmain, Dmain,
Dreg), R1 is taken before augmentation, p reaches TensorBoard and checkpoints, and resume keeps it."""
import math

import pytest
import torch
from torch import nn

from hifigan.config import load_config
from hifigan.errors import UserError
from hifigan.objectives.base import Batch
from hifigan.objectives.stylegan import StyleGANObjective
from hifigan.registry import AUGMENTS
from hifigan.train.sampler import SharedRandom

from conftest import ROOT, latest_ckpt
from test_objectives import ToyStyleG


def ada(**kw):
    return AUGMENTS.build("ada", kw)


def _local(x):
    return x


# ----------------------------------------------------------------------------------------------
# the controller

def test_p_moves_by_the_sign_of_rt_minus_target_times_images_over_speed():
    pipe = ada(target=0.6, speed_kimg=500, interval=4)
    assert pipe.adaptive and float(pipe.p) == 0.0
    pipe.p.fill_(0.3)
    pipe.observe(torch.tensor([1.0, 2.0, 3.0, -1.0]))  # r_t = (1 + 1 + 1 - 1) / 4 = 0.5 < 0.6: p goes down
    assert pipe.adjust(step=0, nimg=64, all_mean=_local) == {}  # not an adjustment step: nothing moves
    assert float(pipe.p) == pytest.approx(0.3)
    out = pipe.adjust(step=3, nimg=4 * 64, all_mean=_local)
    assert out["Augment/rt"] == pytest.approx(0.5)
    assert float(pipe.p) == pytest.approx(0.3 - 256 / 500_000)
    pipe.observe(torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0]))  # r_t = 0.6: exactly on target, p stays
    pipe.adjust(step=7, nimg=8 * 64, all_mean=_local)
    assert float(pipe.p) == pytest.approx(0.3 - 256 / 500_000)
    pipe.observe(torch.ones(8))                             # r_t = 1 > 0.6: p goes up by the images since then
    pipe.adjust(step=11, nimg=12 * 64 + 32, all_mean=_local)
    assert float(pipe.p) == pytest.approx(0.3 - 256 / 500_000 + 288 / 500_000)


def test_p_goes_from_0_to_1_in_speed_kimg_and_stays_in_0_1():
    pipe = ada(speed_kimg=2, interval=1)
    nimg = 0
    for step in range(2000 // 64 + 1):
        pipe.observe(torch.ones(64))  # D is sure of every real: overfitting, p up
        nimg += 64
        pipe.adjust(step, nimg, _local)
        if nimg < 2000:
            assert float(pipe.p) == pytest.approx(nimg / 2000)
    assert float(pipe.p) == 1.0  # clamped
    for step in range(100):
        pipe.observe(-torch.ones(64))
        nimg += 64
        pipe.adjust(step, nimg, _local)
    assert float(pipe.p) == 0.0


def test_fixed_p_never_moves_and_none_draws_nothing():
    pipe = ada(p=0.25)
    assert not pipe.adaptive and float(pipe.p) == 0.25
    pipe.observe(torch.ones(64))
    assert pipe.adjust(3, 1000, _local) == {} and float(pipe.p) == 0.25
    none = AUGMENTS.build("none", {})
    r = SharedRandom(0, 4, 4, "cpu")
    r.begin()
    x = torch.randn(4, 1, 8, 8)
    v = r.view(0)
    assert none(x, v) is x and v.count == 0


def test_controller_state_round_trips():
    pipe = ada(interval=2)
    pipe.p.fill_(0.123)
    pipe.observe(torch.tensor([1.0, -1.0, 1.0]))
    pipe.last_nimg = 640
    fresh = ada(interval=2)
    fresh.load_aug_state(pipe.aug_state(), "cpu")
    assert float(fresh.p) == pytest.approx(0.123) and fresh.last_nimg == 640
    assert torch.equal(fresh.signs, pipe.signs)


# ----------------------------------------------------------------------------------------------
# every image D sees goes through the policy

class Shift(nn.Module):
    """A stand-in policy: x -> 2x + 10, drawing one number per sample (as a real policy draws)."""
    adaptive = False

    def __init__(self):
        super().__init__()
        self.register_buffer("p", torch.ones([]))
        self.calls = 0

    def forward(self, x, rand):
        rand.rand(1)
        self.calls += 1
        return 2 * x + 10

    def observe(self, logits):
        self.seen = logits


class SpyD(nn.Module):
    """D(x) = 0.5 * sum(a x^2); records what it sees."""
    num_classes = 0

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.full((1, 2, 2, 2), 0.5))
        self.inputs = []

    def forward(self, x, c=None):
        self.inputs.append(x.detach().clone())
        return 0.5 * (self.a * x.square()).flatten(1).sum(1)


def _batch(img=None, n=4, seed=0):
    r = SharedRandom(seed, n, n, "cpu")
    r.begin()
    return Batch(img=img, c=None, rand=r.view(0))


def test_every_phase_shows_d_augmented_images_and_r1_is_taken_before_augmentation():
    obj = StyleGANObjective(StyleGANObjective.Config(r1_gamma=2.0))
    obj.augment = Shift()
    G, D = ToyStyleG(), SpyD()
    # seeded and bounded: an unseeded draw below -2.5 made 2x + 10 < 5 about one run in five
    reals = torch.randn(4, 2, 2, 2, generator=torch.Generator().manual_seed(0)).clamp(-2, 2)
    obj("Gmain", {"G": G, "D": D}, _batch())
    obj("Dmain", {"G": G, "D": D}, _batch(reals))
    assert obj.augment.calls == 3 and len(D.inputs) == 3
    assert all(x.min() > 5 for x in D.inputs)  # fakes are tanh in [-1, 1]: 2x + 10 >= 8
    assert torch.equal(D.inputs[2], 2 * reals + 10)  # Dmain's reals
    assert torch.equal(obj.augment.seen, 0.5 * (0.5 * (2 * reals + 10).square()).flatten(1).sum(1))
    losses, stats = obj("Dreg", {"G": G, "D": D}, _batch(reals))
    assert torch.equal(D.inputs[3], 2 * reals + 10)
    # R1 on the image before augmentation: d/dx D(2x + 10) = 2 a (2x + 10)
    expect = (2 * 0.5 * (2 * reals + 10)).square().flatten(1).sum(1).mean()
    assert stats["r1_penalty"].item() == pytest.approx(expect.item(), rel=1e-6)


def test_a_policy_on_an_objective_that_does_not_apply_it_is_refused(tmp_path):
    from hifigan.train.trainer import Trainer
    cfg = load_config(ROOT / "configs/mnist_dcgan.yaml", [f"run_dir={tmp_path}", "augment.name=ada"])
    with pytest.raises(UserError, match="augment: 'ada' is applied by the stylegan objective only"):
        Trainer(cfg, dry_run=True)


def test_augment_typo_names_the_key():
    with pytest.raises(UserError, match="augment"):
        load_config(ROOT / "configs/stylegan2_mnist.yaml", ["augment.name=ada", "augment.targte=0.5"])


# ----------------------------------------------------------------------------------------------
# training: p in TensorBoard and in checkpoints; resume keeps it bit for bit

def _ada_run(run, kimg, extra=()):
    from test_recipes import shrink
    return load_config(ROOT / "configs/stylegan2_mnist.yaml",
                       shrink("stylegan2_mnist.yaml", run) + [f"train.total_kimg={kimg}", "checkpoint.every_kimg=0.048",
                                                              "augment.name=ada", "augment.interval=1",
                                                              "augment.speed_kimg=0.2", "augment.p_init=0.5",
                                                              *extra])


def test_resume_keeps_p_pl_mean_kimg_and_optimizer_state_bit_identical(tmp_path, one_thread):
    from hifigan.train.trainer import Trainer
    whole = Trainer(_ada_run(tmp_path / "whole", 0.096))
    whole.run()
    half = Trainer(_ada_run(tmp_path / "split", 0.048))
    half.run()
    resumed = Trainer(_ada_run(tmp_path / "split", 0.096))
    resumed.run()
    a, b = (torch.load(latest_ckpt(tmp_path / r) / "state.pt", weights_only=True) for r in ("whole", "split"))
    assert a["nimg"] == b["nimg"] == 96 and a["step"] == b["step"] == 12
    p_whole, p_split = a["objective"]["augment.p"], b["objective"]["augment.p"]
    assert torch.equal(p_whole, p_split)
    assert torch.equal(a["objective"]["pl_mean"], b["objective"]["pl_mean"])
    assert torch.equal(a["objective"]["augment.signs"], b["objective"]["augment.signs"])
    for net in ("G", "D"):
        for sa, sb in zip(a["optim"][net]["state"].values(), b["optim"][net]["state"].values()):
            for k in sa:
                assert torch.equal(sa[k], sb[k])
    for net in ("G", "D", "G_ema"):
        wa, wb = whole.nets.get(net, whole.G_ema).state_dict(), resumed.nets.get(net, resumed.G_ema).state_dict()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{net}.{k}"
    # and TensorBoard has p
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ev = EventAccumulator(str(tmp_path / "whole" / "tensorboard")).Reload()
    assert "Augment/p" in ev.Tags()["scalars"] and "Augment/rt" in ev.Tags()["scalars"]
    ps = [e.value for e in ev.Scalars("Augment/p")]
    assert all(0 <= v <= 1 for v in ps) and math.isclose(ps[-1], float(p_whole), rel_tol=1e-6)
    assert len({round(v, 6) for v in ps}) > 1  # the controller moved p during the run
