"""The regularizers' math against closed forms: R1, path length, WGAN-GP; the path-length running
mean; style mixing's crossover draw; Dreg sees the reals of the Dmain before it."""
import math

import torch
from torch import nn

from hifigan.objectives.base import Batch
from hifigan.objectives.stylegan import StyleGANObjective, path_lengths, r1_penalty
from hifigan.objectives.wgan import gradient_penalty
from hifigan.train.sampler import SharedRandom


class Quadratic(nn.Module):
    """D(x) = 0.5 * sum(a * x^2) per sample: grad_x D = a * x."""
    num_classes = 0

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x, c=None):
        return 0.5 * (self.a * x.square()).flatten(1).sum(1)


def test_r1_penalty_is_the_squared_input_gradient_norm():
    a = torch.rand(1, 2, 3, 3, dtype=torch.float64) + 0.5
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    pen, logits = r1_penalty(Quadratic(a), x)
    assert torch.allclose(pen, (a * x).square().flatten(1).sum(1))
    # differentiable for the D step: d/da sum ||a x||^2 = 2 a x^2 summed over the batch
    D = Quadratic(a.clone())
    pen, _ = r1_penalty(D, x)
    grad_a, = torch.autograd.grad(pen.sum(), D.a)
    assert torch.allclose(grad_a, (2 * D.a * x.square()).sum(0, keepdim=True))


def test_path_length_of_a_linear_synthesis_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    N, L, W, P = 3, 4, 5, 6
    M = torch.randn(L, W, P, dtype=torch.float64, generator=g)  # img = sum_l w_l @ M_l
    ws = torch.randn(N, L, W, dtype=torch.float64, generator=g, requires_grad=True)
    img = torch.einsum("nlw,lwp->np", ws, M).reshape(N, 1, 2, 3)
    y = torch.randn(N, 1, 2, 3, dtype=torch.float64, generator=g)
    lengths = path_lengths(img, ws, y)
    jty = torch.einsum("lwp,np->nlw", M, y.reshape(N, P))  # J_w^T y for each layer
    expect = jty.square().sum(2).mean(1).sqrt()
    assert torch.allclose(lengths, expect)


def test_gradient_penalty_of_a_linear_critic_is_known():
    a = torch.randn(1, 1, 4, 4, dtype=torch.float64)

    class Linear(nn.Module):
        def forward(self, x, c=None):
            return (a * x).flatten(1).sum(1)
    real, fake = torch.randn(3, 1, 4, 4, dtype=torch.float64), torch.randn(3, 1, 4, 4, dtype=torch.float64)
    gp = gradient_penalty(Linear(), real, fake, torch.rand(3, 1, 1, 1, dtype=torch.float64))
    assert torch.allclose(gp, (a.norm() - 1).square().expand(3))


class ToyStyleG(nn.Module):
    """img = tanh(ws @ A) with a w_avg buffer: enough of the StyleGAN interface for the objective."""
    z_dim, w_dim, num_ws, num_classes = 4, 4, 3, 0

    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(torch.randn(4, 8))
        self.B = nn.Parameter(torch.eye(4))  # a "mapping", so ws are in the graph as in StyleGAN
        self.register_buffer("w_avg", torch.zeros(4))
        self.last_crossover = None

    def forward(self, z, c=None, mix_z=None, crossover=None, update_w_avg=None, return_ws=False, ws_offset=None, **kw):
        self.last_crossover = crossover
        ws = (z @ self.B)[:, None].repeat(1, self.num_ws, 1)
        if mix_z is not None:
            layer = torch.arange(self.num_ws)
            ws2 = (mix_z @ self.B)[:, None].expand_as(ws)
            cross = torch.as_tensor(crossover).expand(z.shape[0])
            ws = torch.where((layer[None] < cross[:, None])[:, :, None], ws, ws2)
        if ws_offset is not None:  # where the path-length gradient is taken
            ws = ws + ws_offset
        img = torch.tanh(ws.sum(1) @ self.A).reshape(-1, 2, 2, 2)
        return (img, ws) if return_ws else img


def _batch(n=8, seed=0):
    r = SharedRandom(seed, n, n, "cpu")
    r.begin()
    return Batch(img=None, c=None, rand=r.view(0))


def test_per_sample_style_mixing_draws_a_crossover_in_1_to_num_ws_with_its_probability():
    G = ToyStyleG()
    obj = StyleGANObjective(StyleGANObjective.Config(style_mixing=1.0, mixing_per="sample"))
    obj.fake(G, _batch(256))
    assert G.last_crossover.min() >= 1 and G.last_crossover.max() < G.num_ws
    assert len(set(G.last_crossover.tolist())) == G.num_ws - 1  # every layer 1..num_ws-1 drawn
    obj = StyleGANObjective(StyleGANObjective.Config(style_mixing=0.0, mixing_per="sample"))
    obj.fake(G, _batch(256))
    assert (G.last_crossover == G.num_ws).all()
    obj = StyleGANObjective(StyleGANObjective.Config(style_mixing=0.5, mixing_per="sample"))
    obj.fake(G, _batch(4000))
    assert abs((G.last_crossover < G.num_ws).double().mean().item() - 0.5) < 0.03


def test_style_mixing_decides_once_per_global_batch_by_default():
    G = ToyStyleG()
    assert StyleGANObjective.Config().mixing_per == "batch"
    obj = StyleGANObjective(StyleGANObjective.Config(style_mixing=0.9))
    drawn = []
    for seed in range(400):
        obj.fake(G, _batch(16, seed=seed))
        drawn.append(G.last_crossover)
    assert all(isinstance(c, int) for c in drawn)  # one layer index for the whole batch
    mixed = [c for c in drawn if c < G.num_ws]
    assert abs(len(mixed) / len(drawn) - 0.9) < 0.05
    assert min(mixed) >= 1 and set(mixed) == set(range(1, G.num_ws))
    # every rank (chunk) of one global batch takes the same decision
    r = SharedRandom(7, 16, 8, "cpu")
    seen = []
    for chunk in (0, 1):
        r.begin() if chunk == 0 else None
        obj.fake(G, Batch(img=None, c=None, rand=r.view(chunk)))
        seen.append(G.last_crossover)
    assert seen[0] == seen[1]


def test_path_length_running_mean_follows_its_decay_and_is_checkpointed():
    G = ToyStyleG()
    obj = StyleGANObjective(StyleGANObjective.Config(pl_weight=2.0, pl_decay=0.25, pl_batch_shrink=2))
    losses, stats = obj("Greg", {"G": G, "D": None}, _batch(8, seed=1))
    first = stats["pl_length"].item()
    assert math.isclose(obj.pl_mean.item(), 0.25 * first, rel_tol=1e-6)
    before = obj.pl_mean.item()
    _, stats = obj("Greg", {"G": G, "D": None}, _batch(8, seed=2))
    assert math.isclose(obj.pl_mean.item(), before + 0.25 * (stats["pl_length"].item() - before), rel_tol=1e-6)
    fresh = StyleGANObjective(obj.cfg)
    fresh.load_state_dict(obj.state_dict(), "cpu")
    assert fresh.pl_mean.item() == obj.pl_mean.item()
    assert losses["pl"].requires_grad


def test_default_phases_follow_the_lazy_intervals():
    ph = StyleGANObjective(StyleGANObjective.Config(pl_weight=2.0, r1_every=16, pl_every=4)).default_phases
    assert [(p.name, p.every) for p in ph] == [("Gmain", 1), ("Greg", 4), ("Dmain", 1), ("Dreg", 16)]
    ph = StyleGANObjective(StyleGANObjective.Config(pl_weight=0.0, r1_gamma=0.0)).default_phases
    assert [p.name for p in ph] == ["Gmain", "Dmain"]


def test_lazy_r1_sees_the_reals_of_the_d_step_before_it_and_counts_them_once(tmp_path):
    from hifigan.config import load_config
    from hifigan.train.trainer import Trainer
    from conftest import ROOT
    from test_recipes import shrink
    torch.set_num_threads(1)
    tr = Trainer(load_config(ROOT / "configs/stylegan2_mnist.yaml", shrink("stylegan2_mnist.yaml", tmp_path)))
    seen, obj = {}, tr.objective

    class Spy:
        def __getattr__(self, k):
            return getattr(obj, k)

        def __call__(self, phase, nets, batch):
            seen[phase] = None if batch.img is None else batch.img.clone()
            return obj(phase, nets, batch)
    tr.objective = Spy()
    tr.step = 0  # every phase runs at step 0
    tr.train_step()
    assert set(seen) == {"Gmain", "Greg", "Dmain", "Dreg"}
    assert seen["Gmain"] is None and seen["Greg"] is None
    assert torch.equal(seen["Dreg"], seen["Dmain"])
    assert tr.nimg == tr.batch_size  # one real batch per step, however many phases look at it


# ----------------------------------------------------------------------------------------------
# path length: the running mean stays in the graph (StyleGAN2-ADA), across ranks too

def test_pl_penalty_gradient_matches_the_closed_form_with_the_mean_in_the_graph():
    from hifigan.objectives.stylegan import pl_penalty
    n, d = 6, 0.25
    a = torch.tensor(0.7, dtype=torch.float64)
    l = torch.rand(n, dtype=torch.float64, requires_grad=True)
    pen, m = pl_penalty(l, a, d)
    assert torch.allclose(m, a + d * (l.mean() - a))
    g, = torch.autograd.grad(pen, l)
    r = (l - m).detach()
    assert torch.allclose(g, 2 / n * r - 2 * d / n * r.mean())  # d/dl_i of mean_j (l_j - m(l))^2
    # a detached batch mean drops the second term: the two gradients differ by exactly it
    m_det = a.lerp(l.detach().mean(), d)
    g_det, = torch.autograd.grad((l - m_det).square().mean(), l)
    assert torch.allclose(g - g_det, torch.full_like(g, -2 * d / n * r.mean().item()))
    assert not torch.allclose(g, g_det)


def test_greg_gradient_equals_a_hand_built_graph():
    """The objective's Greg loss, differentiated to G's weights, against the same graph built by hand
    from the same draws: lengths = sqrt(mean_l ||J_l^T y||^2), a' = lerp(a, mean(lengths), decay) kept
    in the graph, loss = pl_weight * mean (lengths - a')^2."""
    G = ToyStyleG()
    cfg = StyleGANObjective.Config(pl_weight=2.0, pl_decay=0.3, pl_batch_shrink=2, style_mixing=0.0)
    obj = StyleGANObjective(cfg)
    obj.pl_mean = torch.tensor(0.4)
    torch.manual_seed(5)
    losses, stats = obj("Greg", {"G": G, "D": None}, _batch(8, seed=3))
    got = torch.autograd.grad(losses["pl"], [G.A, G.B])
    # by hand
    r = SharedRandom(3, 8, 8, "cpu")
    r.begin()
    v = r.view(0)
    z = v.randn(G.z_dim)[:4]
    ws = (z @ G.B)[:, None].repeat(1, G.num_ws, 1)
    img = torch.tanh(ws.sum(1) @ G.A).reshape(-1, 2, 2, 2)
    torch.manual_seed(5)
    y = torch.randn_like(img) / math.sqrt(4)
    jty, = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    lengths = jty.square().sum(2).mean(1).sqrt()
    m = torch.tensor(0.4).lerp(lengths.mean(), 0.3)
    expect = torch.autograd.grad(2.0 * (lengths - m).square().mean(), [G.A, G.B])
    for a, b in zip(got, expect):
        assert torch.allclose(a, b, atol=1e-6)
    assert math.isclose(obj.pl_mean.item(), m.item(), rel_tol=1e-6)


def _two_rank_pl(rank, world, port, lengths, out):
    import torch.distributed as dist
    from hifigan.objectives.stylegan import pl_penalty
    from hifigan.train.backend import all_mean
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    n = lengths.shape[0] // world
    mine = lengths[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    pen, _ = pl_penalty(mine, torch.tensor(0.3, dtype=torch.float64), 0.2, lambda x: all_mean(x, world))
    pen.backward()
    out[rank] = mine.grad.clone()
    dist.destroy_process_group()


def test_cross_rank_pl_mean_is_differentiable_two_ranks_equal_one():
    """Two gloo ranks x 4 lengths: each rank's gradient, averaged as DDP averages, equals one rank x 8."""
    import socket
    import torch.multiprocessing as mp
    from hifigan.objectives.stylegan import pl_penalty
    lengths = torch.rand(8, dtype=torch.float64)
    whole = lengths.clone().requires_grad_(True)
    pen, _ = pl_penalty(whole, torch.tensor(0.3, dtype=torch.float64), 0.2)
    pen.backward()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        procs = [ctx.Process(target=_two_rank_pl, args=(r, 2, port, lengths, out)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert all(p.exitcode == 0 for p in procs)
        per_rank = torch.cat([out[0], out[1]]) / 2  # DDP's mean over ranks of the parameter gradients
    assert torch.allclose(per_rank, whole.grad)
