import math

import pytest
import torch

from hifigan.config import PhaseConfig, load_config
from hifigan.train.ema import ema_beta, ema_update
from hifigan.train.phases import Phase, build_optimizer, lazy_ratio
from hifigan.train.sampler import SharedRandom
from hifigan.train.trainer import Trainer
from conftest import tiny_overrides


@pytest.fixture
def trainer(dcgan_cfg, tmp_path):
    cfg = load_config(dcgan_cfg, tiny_overrides(tmp_path / "run"))
    return Trainer(cfg)


def test_g_step_leaves_no_grad_in_d(trainer):
    for p in trainer.nets["D"].parameters():
        p.grad = None
    g_before = [p.detach().clone() for p in trainer.nets["G"].parameters()]
    trainer.run_phase(Phase("Gmain", ("G",)))
    assert all(p.grad is None for p in trainer.nets["D"].parameters())
    assert all(p.grad is None for p in trainer.nets["G"].parameters())  # zeroed (set to None) after the step
    assert any(not torch.equal(a, p) for a, p in zip(g_before, trainer.nets["G"].parameters()))


def test_d_step_leaves_no_grad_in_g_and_g_unchanged(trainer):
    g_before = [p.detach().clone() for p in trainer.nets["G"].parameters()]
    trainer.run_phase(Phase("Dmain", ("D",)))
    assert all(p.grad is None for p in trainer.nets["G"].parameters())
    assert all(torch.equal(a, p) for a, p in zip(g_before, trainer.nets["G"].parameters()))


def test_d_phase_draws_reals_and_g_phase_does_not(trainer):
    trainer.run_phase(Phase("Gmain", ("G",)))
    assert trainer.nimg == 0
    trainer.run_phase(Phase("Dmain", ("D",), repeats=1))
    assert trainer.nimg == 16


def test_schedule_repeats_and_every(dcgan_cfg, tmp_path):
    cfg = load_config(dcgan_cfg, tiny_overrides(tmp_path / "r"))
    cfg.phases = [PhaseConfig(name="Dmain", nets=["D"], repeats=3), PhaseConfig(name="Gmain", nets=["G"], every=2)]
    tr = Trainer(cfg)
    ran = []
    tr.run_phase = lambda ph: ran.append(ph.name) or True  # True: the phase was finite and applied
    for _ in range(2):
        tr.train_step()
    assert ran == ["Dmain"] * 3 + ["Gmain"] + ["Dmain"] * 3


def test_ema_half_life():
    beta = ema_beta(batch_size=100, ema_kimg=1.0)  # 10 steps of 100 images = one half-life
    assert beta ** 10 == pytest.approx(0.5)
    assert ema_beta(64, 0.0) == 0.0
    assert ema_beta(64, 10.0, nimg=1000, rampup=0.05) == pytest.approx(0.5 ** (64 / 50))


def test_ema_update_rule():
    G, G_ema = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        G.weight.fill_(1.0)
        G_ema.weight.fill_(3.0)
        G.running_mean.fill_(7.0)
    ema_update(G_ema, G, beta=0.25)
    assert torch.allclose(G_ema.weight, torch.full((3,), 0.25 * 3.0 + 0.75 * 1.0))
    assert torch.equal(G_ema.running_mean, G.running_mean)  # buffers are copied


def test_lazy_regularization_adjusts_adam():
    phases = [Phase("Dmain", ("D",)), Phase("Dreg", ("D",), every=16), Phase("Gmain", ("G",))]
    assert lazy_ratio(phases, "D") == pytest.approx(16 / 17)
    assert lazy_ratio(phases, "G") == 1.0
    from hifigan.config import OptimConfig
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimConfig(lr=0.002, betas=(0.0, 0.99)), 16 / 17)
    g = opt.param_groups[0]
    assert g["lr"] == pytest.approx(0.002 * 16 / 17)
    assert g["betas"][1] == pytest.approx(0.99 ** (16 / 17))


def test_shared_randomness_does_not_depend_on_the_split():
    whole = SharedRandom(3, global_batch=8, chunk_size=8, device="cpu")
    whole.begin()
    z_whole = whole.view(0).randn(5)
    halves = SharedRandom(3, global_batch=8, chunk_size=4, device="cpu")
    halves.begin()
    z0, z1 = halves.view(0).randn(5), halves.view(1).randn(5)  # rank 0 and rank 1 (or two micro-steps)
    assert torch.equal(torch.cat([z0, z1]), z_whole)


def test_data_stream_is_a_permutation_per_epoch(trainer):
    n = len(trainer.data.data)
    idx = trainer.data.data.indices(0, n)
    assert sorted(idx.tolist()) == list(range(n))
    crossing = trainer.data.data.indices(n - 5, 10)  # last 5 of epoch 0, first 5 of epoch 1
    assert torch.equal(crossing[:5], idx[-5:])
    assert not torch.equal(trainer.data.data.indices(n, 10), idx[:10])  # epoch 1 reshuffled
    assert math.isclose(float(trainer.data.data.get(idx[:4], "cpu")[0].min()), -1.0)
