"""BigGAN / SAGAN training math: cross-replica batch norm on two processes against one, the orthogonal
regularizer against its formula and the reference's gradient, the hinge loss, G_ema's start, and the
truncation trick's resampling."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.nn as nn

from hifigan.nn.norms import CrossReplicaBatchNorm2d, set_cross_replica_sum
from hifigan.objectives.biggan import d_hinge, g_hinge, ortho_penalty
from hifigan.sampling.seeds import resample_outside, seed_latents
from hifigan.train.ema import ema_beta


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 5, generator=g, dtype=torch.float64) * 2 + 0.5
    w = torch.randn(8, 3, 5, 5, generator=g, dtype=torch.float64)  # a loss weight per element
    return x, w


def _bn():
    bn = CrossReplicaBatchNorm2d(3, affine=True).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    return bn


def _rank(rank, world, port, out):
    import torch.distributed as dist

    from hifigan.train.backend import _AllSum
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    set_cross_replica_sum(_AllSum.apply)
    x, w = _data()
    n = len(x) // world
    mine = x[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    bn = _bn().train()
    y = bn(mine)
    (y * w[rank * n:(rank + 1) * n]).sum().backward()
    out[rank] = (y.detach(), mine.grad.clone(), bn.weight.grad.clone(), bn.running_mean.clone(), bn.running_var.clone())
    dist.destroy_process_group()


def test_cross_replica_bn_on_two_processes_equals_one_process_on_the_whole_batch():
    import torch.multiprocessing as mp
    x, w = _data()
    whole = x.clone().requires_grad_(True)
    ref = nn.BatchNorm2d(3).double().train()
    ref.load_state_dict(_bn().state_dict())
    y = ref(whole)
    (y * w).sum().backward()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        procs = [ctx.Process(target=_rank, args=(r, 2, port, out)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert all(p.exitcode == 0 for p in procs)
        (y0, gx0, gw0, rm0, rv0), (y1, gx1, gw1, rm1, rv1) = out[0], out[1]
    assert torch.allclose(torch.cat([y0, y1]), y.detach(), atol=1e-12)
    # the input gradient of each rank's share is the one-process gradient (the loss sums over samples)
    assert torch.allclose(torch.cat([gx0, gx1]), whole.grad, atol=1e-12)
    # parameter gradients: each rank holds its share's; their sum (DDP's all-reduce, for a summed loss) is the whole
    assert torch.allclose(gw0 + gw1, ref.weight.grad, atol=1e-12)
    for rm, rv in ((rm0, rv0), (rm1, rv1)):  # running statistics of the global batch on every rank
        assert torch.allclose(rm, ref.running_mean, atol=1e-12) and torch.allclose(rv, ref.running_var, atol=1e-12)


def test_without_a_registered_sum_cross_replica_bn_is_batch_norm():
    set_cross_replica_sum(None)
    x, _ = _data()
    bn, ref = _bn().train(), nn.BatchNorm2d(3).double().train()
    ref.load_state_dict(bn.state_dict())
    assert torch.equal(bn(x), ref(x))


def test_cross_replica_bn_with_a_local_sum_matches_batch_norm_and_its_cumulative_average():
    x, _ = _data()
    set_cross_replica_sum(lambda t: t)
    try:
        bn, ref = _bn().train(), nn.BatchNorm2d(3).double().train()
        ref.load_state_dict(bn.state_dict())
        bn.momentum = ref.momentum = None  # standing statistics: an exact average over batches
        for k in range(3):
            xk = x * (k + 1)
            assert torch.allclose(bn(xk), ref(xk), atol=1e-12)
        assert torch.allclose(bn.running_var, ref.running_var, atol=1e-12)
        assert int(bn.num_batches_tracked) == 3
    finally:
        set_cross_replica_sum(None)


# -- orthogonal regularization ---------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.conv = nn.Conv2d(3, 4, 3)
        self.lin = nn.Linear(5, 6)
        self.shared = nn.Embedding(10, 7)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g, dtype=torch.float64)


def test_ortho_penalty_is_the_off_diagonal_gram_norm_and_its_half_gives_the_references_gradient():
    net = _Net()
    expect = 0.0
    for w in (net.conv.weight, net.lin.weight):  # biases (1-d) and the shared embedding are left out
        m = w.detach().flatten(1)
        gram = m @ m.T
        expect += ((gram * (1 - torch.eye(len(m), dtype=m.dtype))) ** 2).sum()
    beta = 1e-4
    loss = 0.5 * beta * ortho_penalty(net)
    assert float(ortho_penalty(net).detach()) == pytest.approx(float(expect), rel=1e-12)
    loss.backward()
    for w in (net.conv.weight, net.lin.weight):  # BigGAN-PyTorch's utils.ortho: grad += 2 beta (W W^T * (1 - I)) W
        m = w.detach().flatten(1)
        ref = 2 * beta * ((m @ m.T) * (1 - torch.eye(len(m), dtype=m.dtype))) @ m
        assert torch.allclose(w.grad.flatten(1), ref, rtol=1e-10)
    assert net.shared.weight.grad is None


def test_ortho_penalty_of_orthonormal_rows_is_zero():
    lin = nn.Linear(8, 4, bias=False)
    nn.init.orthogonal_(lin.weight)
    assert float(ortho_penalty(lin)) == pytest.approx(0.0, abs=1e-10)


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    r, f = d_hinge(real, fake)
    assert float(r) == pytest.approx((0 + 0.5 + 2) / 3) and float(f) == pytest.approx((0 + 1 + 2) / 3)
    assert float(g_hinge(fake)) == pytest.approx(1 / 3)


# -- G_ema start, truncation -------------------------------------------------------------------
def test_ema_copies_g_until_its_start_then_averages():
    assert ema_beta(256, 10, nimg=1000, start_kimg=2) == 0.0
    assert ema_beta(256, 10, nimg=2000, start_kimg=2) == pytest.approx(0.5 ** (256 / 10_000))
    assert ema_beta(256, 10, nimg=1000) == pytest.approx(0.5 ** (256 / 10_000))


@pytest.mark.parametrize("rng", ["torch", "numpy"])
@pytest.mark.parametrize("t", [0.2, 0.5, 1.5])
def test_truncation_resampling_keeps_every_z_under_the_threshold_and_keeps_entries_already_inside(t, rng):
    seeds = list(range(50))
    z = seed_latents(seeds, 120, rng, threshold=t)
    full = seed_latents(seeds, 120, rng)
    assert z.abs().max() <= t
    inside = full.abs() <= t
    assert torch.equal(z[inside], full[inside]) and (~inside).any()
    assert torch.equal(seed_latents(seeds[7:8], 120, rng, threshold=t)[0], z[7])  # a seed's z is its own
    # the redrawn entries are standard normal conditioned on |z| <= t: their spread is the truncated one
    redrawn = z[~inside].double().numpy()
    from scipy.stats import truncnorm
    assert np.std(redrawn) == pytest.approx(truncnorm(-t, t).std(), rel=0.1)


def test_a_non_positive_threshold_is_refused():
    from hifigan.errors import UserError
    with pytest.raises(UserError, match="must be positive"):
        resample_outside(torch.randn(4), 0.0, lambda k: torch.randn(k))
