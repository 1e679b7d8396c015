"""Energy-based GANs and the VAE: the autoencoder D's shapes, EBGAN's pull-away term and margin
hinge, BEGAN's k_t controller (update, clipping, convergence measure, checkpointed state, resume),
and the VAE's closed-form KL, likelihoods and reparameterization gradient."""
import math

import pytest
import torch

from hifigan.train.phases import Phase
from torch import nn

from hifigan.errors import UserError
from hifigan.models.energy import AutoencoderDiscriminator
from hifigan.models.vae import VAEEncoder
from hifigan.objectives.base import Batch
from hifigan.objectives.energy import BEGANObjective, EBGANObjective, pull_away
from hifigan.objectives.vae import (VAEObjective, bernoulli_nll, gaussian_nll, kl_standard_normal,
                                    reparameterize)
from hifigan.train.sampler import SharedRandom


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


class StubG(nn.Module):
    """img = tanh(z * scale) as an 8x8 image; remembers its last output so tests can recompute energies."""
    z_dim, num_classes = 64, 0

    def __init__(self, scale=None):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))
        self.scale = scale  # [n] per-sample input scale, or None
        self.last = None

    def forward(self, z, c=None):
        s = 1.0 if self.scale is None else self.scale[:, None]
        self.last = torch.tanh(z * s * self.gain).view(-1, 1, 8, 8)
        return self.last


def _ae(**kw):
    torch.manual_seed(0)
    cfg = dict(resolution=8, width=4, code_dim=5, norm="none")
    return AutoencoderDiscriminator(AutoencoderDiscriminator.Config(**{**cfg, **kw}))


def _batch(n=6, seed=0, img=None):
    r = SharedRandom(seed, n, n, "cpu")
    r.begin()
    return Batch(img=img, c=None, rand=r.view(0))


def _reals(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1


# -- the autoencoder discriminator -----------------------------------------------------------------

@pytest.mark.parametrize("res", [28, 32])
def test_autoencoder_d_reconstructs_image_shape_and_returns_its_code(res):
    D = AutoencoderDiscriminator(AutoencoderDiscriminator.Config(resolution=res, width=4, code_dim=7))
    img = torch.randn(3, 1, res, res)
    assert D(img).shape == img.shape
    out = D(img, None, heads=True)
    assert set(out) == {"recon", "code"}
    assert out["recon"].shape == img.shape and out["code"].shape == (3, 7)
    assert D.num_classes == 0


def test_autoencoder_d_rejects_a_resolution_that_does_not_halve_to_a_small_map():
    with pytest.raises(ValueError, match="resolution"):
        AutoencoderDiscriminator.Config(resolution=30)
    with pytest.raises(ValueError, match="norm"):
        AutoencoderDiscriminator.Config(norm="layer")


def test_autoencoder_d_tanh_output_bounds_the_reconstruction():
    D = _ae(tanh_output=True)
    assert D(torch.randn(2, 1, 8, 8) * 100).abs().max() <= 1


# -- EBGAN -----------------------------------------------------------------------------------------

def test_pull_away_term_matches_a_double_loop():
    s = torch.randn(5, 7, dtype=torch.float64)
    total = 0.0
    for i in range(5):
        for j in range(5):
            if i != j:
                total += (s[i] @ s[j] / (s[i].norm() * s[j].norm())).item() ** 2
    assert math.isclose(pull_away(s).item(), total / (5 * 4), rel_tol=1e-12)
    assert pull_away(s[:1]).item() == 0.0
    same = torch.ones(4, 3)  # collapsed codes: every pair is parallel
    assert math.isclose(pull_away(same).item(), 1.0, rel_tol=1e-6)


def _d_grads(D, loss):
    grads = torch.autograd.grad(loss, list(D.parameters()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(D.parameters(), grads)]


def test_ebgan_fakes_above_the_margin_give_d_no_gradient():
    n = 6
    G, D = StubG(torch.linspace(0.2, 3.0, n)), _ae()
    nets = {"G": G, "D": D}
    obj = EBGANObjective(EBGANObjective.Config(margin=1e-6))  # every fake is above this margin
    losses, _ = obj("Dmain", nets, _batch(n, img=_reals(n)))
    assert losses["fake"].item() == 0.0
    assert all((g == 0).all() for g in _d_grads(D, losses["fake"]))
    # a margin between the fakes' energies: only the fakes below it push D, each by -grad E_i / n
    fake = G.last.detach().clone()
    with torch.no_grad():
        e = (D(fake) - fake).square().flatten(1).mean(1)
    margin = e.sort().values[n // 2 - 1: n // 2 + 1].mean().item()  # between the two middle energies
    obj = EBGANObjective(EBGANObjective.Config(margin=margin))
    losses, stats = obj("Dmain", nets, _batch(n, img=_reals(n)))
    assert torch.equal(G.last, fake)
    below = e < margin
    assert 0 < below.sum() < n and math.isclose(stats["fake_below_margin"].item(), below.float().mean().item())
    e_again = (D(fake) - fake).square().flatten(1).mean(1)
    expect = _d_grads(D, -(e_again * below).sum() / n)
    for got, want in zip(_d_grads(D, losses["fake"]), expect):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-10)


def test_ebgan_g_loss_adds_the_weighted_pull_away_of_d_codes():
    n = 6
    G, D = StubG(), _ae()
    obj = EBGANObjective(EBGANObjective.Config(margin=1.0, pt_weight=0.25))
    losses, stats = obj("Gmain", {"G": G, "D": D}, _batch(n))
    out = D(G.last, heads=True)
    assert math.isclose(losses["pt"].item(), 0.25 * pull_away(out["code"]).item(), rel_tol=1e-5)
    assert math.isclose(losses["adv"].item(), (out["recon"] - G.last).square().mean().item(), rel_tol=1e-5)
    losses["adv"].backward()
    assert G.gain.grad is not None and G.gain.grad != 0


def test_energy_objectives_need_an_autoencoder_d():
    class LogitD(nn.Module):
        num_classes = 0

        def forward(self, img, c=None, heads=False):
            return img.flatten(1).sum(1)
    for obj in (EBGANObjective(EBGANObjective.Config()), BEGANObjective(BEGANObjective.Config())):
        with pytest.raises(UserError, match="autoencoder"):
            obj("Dmain", {"G": StubG(), "D": LogitD()}, _batch(4, img=_reals(4)))


# -- BEGAN -----------------------------------------------------------------------------------------

def _l1(D, v):
    with torch.no_grad():
        return (D(v) - v).abs().mean().item()


def test_began_k_follows_the_proportional_update_and_clips_to_0_1():
    gamma, lam = 0.5, 5.0  # a large gain so that a step can overshoot either end
    D, G = _ae(), StubG()
    obj = BEGANObjective(BEGANObjective.Config(gamma=gamma, lambda_k=lam, k_init=0.3))
    k, clipped = 0.3, set()
    for step in range(6):
        G.gain.data.fill_([0.05, 3.0][(step // 2) % 2])  # small fakes (k rises), then saturated ones (k falls)
        reals = _reals(6, seed=step)
        losses, stats = obj("Dmain", {"G": G, "D": D}, _batch(6, seed=step, img=reals))
        l_real, l_fake = _l1(D, reals), _l1(D, G.last)
        assert math.isclose(stats["k_t"].item(), k, abs_tol=1e-12)
        assert math.isclose(stats["M"].item(), l_real + abs(gamma * l_real - l_fake), rel_tol=1e-5)
        assert math.isclose(losses["fake"].item(), -k * l_fake, rel_tol=1e-5, abs_tol=1e-9)
        assert obj.k.item() == k  # unchanged until the D step is over
        obj("Gmain", {"G": G, "D": D}, _batch(6, seed=100 + step))
        raw = k + lam * (gamma * l_real - l_fake)
        clipped |= {"top"} if raw > 1 else {"bottom"} if raw < 0 else set()
        assert math.isclose(obj.k.item(), min(max(raw, 0.0), 1.0), abs_tol=1e-5)
        k = obj.k.item()
    assert clipped == {"top", "bottom"}


def test_began_makes_one_k_update_per_d_step_from_the_micro_batch_mean():
    D, G = _ae(), StubG()
    obj = BEGANObjective(BEGANObjective.Config(gamma=0.7, lambda_k=0.01, k_init=0.5))
    parts = []
    for a in range(3):  # three accumulation micro-batches of one D step
        reals = _reals(4, seed=a)
        obj("Dmain", {"G": G, "D": D}, _batch(4, seed=a, img=reals))
        parts.append(0.7 * _l1(D, reals) - _l1(D, G.last))
        assert obj.k.item() == 0.5
    obj("Gmain", {"G": G, "D": D}, _batch(4, seed=9))
    assert math.isclose(obj.k.item(), 0.5 + 0.01 * sum(parts) / 3, rel_tol=1e-6)
    before = obj.k.item()
    obj("Gmain", {"G": G, "D": D}, _batch(4, seed=10))  # nothing pending: no second update
    assert obj.k.item() == before


def test_began_k_and_its_pending_update_survive_a_state_dict_round_trip():
    D, G = _ae(), StubG()
    G.gain.data.fill_(0.05)  # faint fakes: L(G(z)) < gamma L(x), so k climbs off 0
    cfg = BEGANObjective.Config(gamma=0.5, lambda_k=0.05)
    a = BEGANObjective(cfg)
    for step in range(3):
        a("Dmain", {"G": G, "D": D}, _batch(4, seed=step, img=_reals(4, step)))
        a("Gmain", {"G": G, "D": D}, _batch(4, seed=50 + step))
    a("Dmain", {"G": G, "D": D}, _batch(4, seed=7, img=_reals(4, 7)))  # a checkpoint between Dmain and Gmain
    b = BEGANObjective(cfg)
    b.load_state_dict(a.state_dict(), "cpu")
    assert b.k.item() == a.k.item() and b.k.item() > 0
    for obj in (a, b):
        obj("Gmain", {"G": G, "D": D}, _batch(4, seed=8))
    assert b.k.dtype == torch.float64 and b.k.item() == a.k.item()


def test_began_k_resumes_exactly_from_a_trainer_checkpoint(tmp_path):
    from conftest import ROOT
    from hifigan.config import load_config
    from hifigan.train.trainer import Trainer
    from test_recipes import shrink
    cfg = load_config(ROOT / "configs/mnist_began.yaml",
                      shrink("mnist_began.yaml", tmp_path / "run") + ["objective.lambda_k=0.05", "objective.k_init=0.5"])
    tr = Trainer(cfg)
    tr.run()
    k = tr.objective.k.clone()
    assert 0 <= k.item() <= 1 and k.item() != 0.5 and tr.objective.pending_n == 0  # k moved; nothing pending
    again = Trainer(cfg)
    assert again.resume()
    assert torch.equal(again.objective.k, k)


# -- VAE -------------------------------------------------------------------------------------------

def test_vae_kl_matches_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.3, -0.7]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0, 0.8], [-2.0, 0.5, 0.1]], dtype=torch.float64)
    S = 200_000
    eps = torch.randn(S, *mu.shape, generator=g, dtype=torch.float64)
    z = reparameterize(mu, logvar, eps)  # [S, N, d]
    log_q = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    mc = (log_q - log_p).mean(0)
    closed = kl_standard_normal(mu, logvar)
    assert torch.allclose(closed, mc, rtol=0.02, atol=0.01)
    assert kl_standard_normal(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max() == 0  # q = prior


def test_vae_likelihoods_are_the_bernoulli_and_gaussian_log_densities():
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64) * 2 - 1
    out = torch.rand(3, 1, 4, 4, dtype=torch.float64) * 1.8 - 0.9
    p, t = (out + 1) / 2, (x + 1) / 2
    want = -(t * p.log() + (1 - t) * (1 - p).log()).flatten(1).sum(1)
    assert torch.allclose(bernoulli_nll(x, out).double(), want, rtol=1e-5)
    want = -torch.distributions.Normal(out, 0.3).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(gaussian_nll(x, out, 0.3), want)


def _vae_nets(z_dim=4):
    from hifigan.models.dcgan import DCGANGenerator
    torch.manual_seed(0)
    G = DCGANGenerator(DCGANGenerator.Config(z_dim=z_dim, resolution=8, width=4))
    E = VAEEncoder(VAEEncoder.Config(z_dim=z_dim, resolution=8, width=4))
    return G, E


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_gradient_reaches_every_encoder_and_decoder_parameter(likelihood):
    G, E = _vae_nets()
    obj = VAEObjective(VAEObjective.Config(likelihood=likelihood))
    losses, stats = obj("VAEmain", {"G": G, "E": E}, _batch(6, img=_reals(6)))
    sum(losses.values()).backward()
    for name, p in [*E.named_parameters(), *G.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert math.isclose(stats["elbo"].item(), -(stats["nll"] + stats["kl"]).item(), rel_tol=1e-6)


def test_vae_reparameterized_z_follows_the_encoder_posterior():
    mu, logvar = torch.tensor([[1.0, -2.0]], requires_grad=True), torch.tensor([[0.0, 2.0]], requires_grad=True)
    eps = torch.tensor([[0.5, -1.0]])
    z = reparameterize(mu, logvar, eps)
    assert torch.allclose(z, torch.tensor([[1.5, -2.0 - math.e]]))
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(1, 2))
    assert torch.allclose(logvar.grad, 0.5 * (0.5 * logvar).exp().detach() * eps)


def test_vae_rejects_an_encoder_with_another_latent_size():
    G, _ = _vae_nets(4)
    _, E = _vae_nets(3)
    obj = VAEObjective(VAEObjective.Config())
    with pytest.raises(UserError, match="z_dim"):
        obj.check({"G": G, "E": E}, [Phase("VAEmain", ("G", "E"))])
