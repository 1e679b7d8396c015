"""The classic objectives against independent computations: LSGAN and WGAN losses by hand, weight
clipping after a real trainer step, WGAN-GP's per-sample interpolation, InfoGAN's mutual-information
bound with Q on D's features or on a trunk of its own, SGAN's K+1-class losses, cGAN + classifier's C phase and
C in G's loss, AC-GAN's class terms, the network checks each objective makes once at build (`check(nets,
phases)`); and the few-labels / held-out data options. Networks are tiny fakes with the documented interfaces
of D (heads logits, class_logits, features), Q and C."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hifigan.config import DataConfig, load_config
from hifigan.data.builtin import load_mnist
from hifigan.data.memory import build_dataset, holdout_split
from hifigan.errors import UserError
from hifigan.nn.codes import apply_codes
from hifigan.objectives import wgan
from hifigan.objectives.base import Batch
from hifigan.objectives.conditional import ACGANObjective, CGANClassifierObjective
from hifigan.objectives.gan import LSGANObjective, d_least_squares, g_least_squares
from hifigan.objectives.infogan import InfoGANObjective, mi_lower_bound
from hifigan.objectives.sgan import SGANObjective, sgan_d_losses, sgan_g_loss
from hifigan.objectives.wgan import WGANGPObjective, WGANObjective, critic_loss, g_wasserstein
from hifigan.registry import OBJECTIVES
from hifigan.train.phases import Phase
from hifigan.train.sampler import SharedRandom

PIX = 16  # fake images are [N, 1, 4, 4]
FEAT = 5  # FakeD's feature width


class FakeG(nn.Module):
    """img = tanh(z A (+ onehot(c) B)) as [N, 1, 4, 4]; records (z, c) of every call."""

    def __init__(self, z_dim=6, num_classes=0, code_cat=0, code_cont=0):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        self.code_cat, self.code_cont = code_cat, code_cont
        self.A = nn.Parameter(torch.randn(z_dim, PIX) * 0.5)
        self.B = nn.Parameter(torch.randn(max(num_classes, 1), PIX) * 0.5)
        self.calls = []

    def forward(self, z, c=None, codes=None):
        z = apply_codes(z, self.code_cat, self.code_cont, *(codes or ()))
        self.calls.append((z, c))
        h = z @ self.A
        if self.num_classes:
            h = h + F.one_hot(c, self.num_classes).float() @ self.B
        return torch.tanh(h).reshape(-1, 1, 4, 4)


class FakeD(nn.Module):
    """features = tanh(a linear trunk on the flattened image); a linear head per documented output on the
    features; records (img, c, heads) per call."""

    def __init__(self, num_classes=0, aux_classes=0, feature_dim=FEAT):
        super().__init__()
        self.num_classes, self.aux_classes, self.feature_dim = num_classes, aux_classes, feature_dim
        self.partial = True
        self.trunk = nn.Linear(PIX, feature_dim)
        sizes = {"logits": 1, "class_logits": aux_classes}
        self.heads = nn.ModuleDict({k: nn.Linear(feature_dim, n) for k, n in sizes.items() if n})
        self.calls = []

    def head(self, name, img):
        h = torch.tanh(self.trunk(img.flatten(1)))
        if name == "features":
            return h
        out = self.heads[name](h)
        return out.flatten() if name == "logits" else out

    def forward(self, img, c=None, heads=False):
        self.calls.append((img, c, heads))
        if not heads:
            return self.head("logits", img)
        names = (*self.heads, "features") if heads is True else heads
        return {k: self.head(k, img) for k in names}


class FakeQ(nn.Module):
    """InfoGAN's Q: linear heads on D's features (trunk shared) or on tanh(a linear trunk of its own on the
    image) (trunk own); records its input per call."""
    num_classes = 0

    def __init__(self, q_cat=0, q_cont=0, trunk="shared", in_features=FEAT):
        super().__init__()
        self.q_cat, self.q_cont = q_cat, q_cont
        self.on_features, self.in_features = trunk == "shared", in_features
        self.trunk = None if self.on_features else nn.Linear(PIX, in_features)
        sizes = {"q_cat": q_cat, "q_cont": q_cont}
        self.heads = nn.ModuleDict({k: nn.Linear(in_features, n) for k, n in sizes.items() if n})
        self.calls = []

    def head(self, name, x):
        return self.heads[name](x if self.trunk is None else torch.tanh(self.trunk(x.flatten(1))))

    def forward(self, x, c=None):
        self.calls.append(x)
        return {k: self.head(k, x) for k in self.heads}


class FakeC(nn.Module):
    """The classifier C: one linear layer on the flattened image; records its input per call."""

    def __init__(self, classes=3):
        super().__init__()
        self.classes = classes
        self.net = nn.Linear(PIX, classes)
        self.calls = []

    def forward(self, img):
        self.calls.append(img)
        return self.net(img.flatten(1))


def make_batch(n=8, img=None, c=None, seed=0):
    r = SharedRandom(seed, n, n, "cpu")
    r.begin()
    return Batch(img=img, c=c, rand=r.view(0))


def reals(n=8, seed=1):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def schedule(obj, **nets):
    """The objective's default phases as the trainer hands them to check(); nets= overrides a phase's nets."""
    return [Phase(p.name, tuple(nets.get(p.name, p.nets)), p.every, p.repeats) for p in obj.default_phases]


# ---------------------------------------------------------------- LSGAN, WGAN

def test_lsgan_losses_match_a_hand_computation():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-1.0, 0.3])
    d_real, d_fake = d_least_squares(real, fake, a=-1.0, b=1.0)
    assert d_real.item() == pytest.approx(0.5 * (0.25 + 1.0) / 2)      # 1/2 mean (D(x) - b)^2
    assert d_fake.item() == pytest.approx(0.5 * (0.0 + 1.69) / 2)      # 1/2 mean (D(G(z)) - a)^2
    assert g_least_squares(fake, c=0.0).item() == pytest.approx(0.5 * (1.0 + 0.09) / 2)


def test_lsgan_objective_uses_the_abc_coding_on_raw_outputs():
    cfg = OBJECTIVES.config("lsgan", {})
    assert (cfg.a, cfg.b, cfg.c) == (0.0, 1.0, 1.0)
    obj = LSGANObjective(cfg)
    G, D, x = FakeG(), FakeD(), reals()
    losses, _ = obj("Dmain", {"G": G, "D": D}, make_batch(img=x))
    assert D.calls[0][0] is x
    with torch.no_grad():
        out_real, out_fake = D.head("logits", x), D.head("logits", D.calls[1][0])
    assert losses["real"].item() == pytest.approx(0.5 * (out_real - 1).square().mean().item(), rel=1e-5)
    assert losses["fake"].item() == pytest.approx(0.5 * out_fake.square().mean().item(), rel=1e-5)
    losses, _ = obj("Gmain", {"G": G, "D": D}, make_batch(seed=3))
    with torch.no_grad():
        out = D.head("logits", D.calls[-1][0])
    assert losses["adv"].item() == pytest.approx(0.5 * (out - 1).square().mean().item(), rel=1e-5)


def test_wgan_losses_are_mean_differences_without_sigmoid_or_log():
    real, fake = torch.tensor([3.0, -1.0, 4.0]), torch.tensor([-2.0, 0.5])
    assert critic_loss(real, fake).item() == pytest.approx(-0.75 - 2.0)
    assert g_wasserstein(fake).item() == pytest.approx(0.75)
    obj = WGANObjective(OBJECTIVES.config("wgan", {}))
    assert [(p.name, p.repeats) for p in obj.default_phases] == [("Dmain", 5), ("Gmain", 1)]
    G, D, x = FakeG(), FakeD(), reals()
    losses, stats = obj("Dmain", {"G": G, "D": D}, make_batch(img=x))
    fake_img = D.calls[-1][0]
    with torch.no_grad():
        expect = D.head("logits", fake_img).mean() - D.head("logits", x).mean()
    assert set(losses) == {"wdist"} and losses["wdist"].item() == pytest.approx(expect.item(), rel=1e-6)
    assert stats["wasserstein"].item() == pytest.approx(-expect.item(), rel=1e-6)


def test_weight_clipping_keeps_every_d_parameter_within_c_after_a_trainer_step(tmp_path):
    from conftest import ROOT
    from test_recipes import shrink
    from hifigan.train.trainer import Trainer
    torch.set_num_threads(1)
    over = shrink("mnist_dcgan.yaml", tmp_path / "run") + [
        "objective={name: wgan, n_critic: 2}", "optim.D.name=rmsprop", "optim.D.lr=5e-5", "optim.D.weight_clip=0.01"]
    tr = Trainer(load_config(ROOT / "configs" / "mnist_dcgan.yaml", over))
    assert any(p.abs().max() > 0.01 for p in tr.nets["D"].parameters())  # the init exceeds c
    tr.train_step()
    assert all(p.abs().max() <= 0.01 for p in tr.nets["D"].parameters())
    assert any(p.abs().max() > 0.01 for p in tr.nets["G"].parameters())  # G is not clipped


class Quadratic(nn.Module):
    """D(x) = 0.5 sum(a x^2): grad_x D = a x, so the penalty at x_hat has a closed form per sample."""
    num_classes = 0

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.rand(1, 1, 4, 4) + 0.5)

    def forward(self, x, c=None):
        return 0.5 * (self.a * x.square()).flatten(1).sum(1)


def test_wgan_gp_interpolates_with_one_coefficient_per_sample(monkeypatch):
    seen = []
    real_gp = wgan.gradient_penalty

    def spy(D, real, fake, u, c=None, target=1.0):
        seen.append((real, fake.detach(), u))
        return real_gp(D, real, fake, u, c, target)
    monkeypatch.setattr(wgan, "gradient_penalty", spy)
    obj = WGANGPObjective(OBJECTIVES.config("wgan_gp", {"drift": 0.0}))
    G, D, x = FakeG(), Quadratic(), reals()
    losses, _ = obj("Dmain", {"G": G, "D": D}, make_batch(img=x))
    real, fake, u = seen[0]
    assert u.shape == (8, 1, 1, 1) and len(torch.unique(u)) == 8
    x_hat = real + u * (fake - real)
    norm = (D.a.detach() * x_hat).flatten(1).norm(dim=1)
    assert losses["gp"].item() == pytest.approx(10 * (norm - 1).square().mean().item(), rel=1e-5)


# ---------------------------------------------------------------- InfoGAN

def test_mi_lower_bound_is_log_k_for_a_perfect_q_and_zero_for_a_uniform_one():
    codes = torch.arange(10).repeat(3)
    perfect = F.one_hot(codes, 10).double() * 100.0
    assert mi_lower_bound(perfect, codes, 10).item() == pytest.approx(math.log(10), abs=1e-9)
    uniform = torch.full((30, 10), 0.7, dtype=torch.float64)
    assert mi_lower_bound(uniform, codes, 10).item() == pytest.approx(0.0, abs=1e-12)


def test_mi_lower_bound_of_a_fixed_q_matches_the_closed_form():
    logits = [[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [1.0, -2.0, 0.0], [0.0, 0.0, 0.0]]
    codes = [0, 2, 1, 1]
    expect = math.log(3) + sum(row[k] - math.log(sum(math.exp(v) for v in row))
                               for row, k in zip(logits, codes)) / len(codes)
    got = mi_lower_bound(torch.tensor(logits, dtype=torch.float64), torch.tensor(codes), 3)
    assert got.item() == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("trunk", ["shared", "own"])
def test_infogan_qmain_codes_layout_and_losses_reach_g_q_and_only_a_shared_trunk_of_d(trunk):
    obj = InfoGANObjective(OBJECTIVES.config("infogan", {"cat": 3, "cont": 2, "lambda_cont": 0.5}))
    assert [(p.name, tuple(p.nets)) for p in obj.default_phases] == [
        ("Dmain", ("D",)), ("Gmain", ("G",)), ("Qmain", ("G", "D", "Q"))]
    assert obj.reals("Qmain") == "" and obj.reals("Dmain") == "draw"
    G, D, Q = FakeG(z_dim=9, code_cat=3, code_cont=2), FakeD(), FakeQ(3, 2, trunk)
    nets = {"G": G, "D": D, "Q": Q}
    obj.check(nets, schedule(obj, Qmain=("G", "D", "Q") if trunk == "shared" else ("G", "Q")))
    losses, stats = obj("Qmain", nets, make_batch(16))
    z = G.calls[-1][0]
    onehot, cont = z[:, 4:7], z[:, 7:]
    assert torch.equal(onehot.sum(1), torch.ones(16)) and set(onehot.unique().tolist()) == {0.0, 1.0}
    assert cont.min() >= -1 and cont.max() <= 1
    with torch.no_grad():  # by hand: G's image, D's features of it (shared), Q's heads
        img = torch.tanh(z @ G.A).reshape(-1, 1, 4, 4)
        q_in = torch.tanh(img.flatten(1) @ D.trunk.weight.T + D.trunk.bias) if trunk == "shared" else img
        q_cat, q_cont = Q.head("q_cat", q_in), Q.head("q_cont", q_in)
    if trunk == "shared":
        assert len(D.calls) == 1 and D.calls[0][2] == ("features",) and torch.allclose(D.calls[0][0], img)
    else:
        assert D.calls == []
    assert len(Q.calls) == 1 and torch.allclose(Q.calls[0], q_in)
    code = onehot.argmax(1)
    assert losses["info_cat"].item() == pytest.approx(F.cross_entropy(q_cat, code).item(), rel=1e-6)
    assert losses["info_cont"].item() == pytest.approx(0.5 * 0.5 * (q_cont - cont).square().sum(1).mean().item(),
                                                       rel=1e-6)
    assert stats["mi_cat"].item() == pytest.approx(math.log(3) - F.cross_entropy(q_cat, code).item(), abs=1e-6)
    sum(losses.values()).backward()
    assert G.A.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in Q.parameters())
    if trunk == "shared":  # D's trunk learns from the information loss, its logit head does not
        assert D.trunk.weight.grad.abs().sum() > 0 and D.heads["logits"].weight.grad is None
    else:
        assert all(p.grad is None for p in D.parameters())


def test_infogan_check_rejects_q_heads_or_g_codes_that_do_not_match_the_objective():
    obj = InfoGANObjective(OBJECTIVES.config("infogan", {"cat": 3, "cont": 2}))
    ok = {"G": FakeG(z_dim=9, code_cat=3, code_cont=2), "D": FakeD(), "Q": FakeQ(3, 2)}
    obj.check(ok, schedule(obj))
    for nets, msg in [({"Q": FakeQ(3, 0)}, r"needs Q.q_cat = 3 and Q.q_cont = 2 \(got 3, 0\)"),
                      ({"Q": FakeQ(4, 2)}, r"needs Q.q_cat = 3 and Q.q_cont = 2 \(got 4, 2\)"),
                      ({"Q": FakeQ(3, 2, in_features=FEAT + 1)}, r"reads D's features \(5 wide\), but Q expects 6"),
                      ({"G": FakeG(z_dim=9)}, "needs G.code_cat = 3 and G.code_cont = 2"),
                      ({"G": FakeG(z_dim=5, code_cat=3, code_cont=2)}, r"G.z_dim \(5\) must hold the codes")]:
        with pytest.raises(UserError, match=msg):
            obj.check({**ok, **nets}, schedule(obj))
    # a Q with a trunk of its own never reads D's features: their widths need not agree
    obj.check({**ok, "Q": FakeQ(3, 2, "own", in_features=FEAT + 1)}, schedule(obj, Qmain=("G", "Q")))


def test_infogan_qmain_trains_d_exactly_when_q_shares_its_trunk():
    obj = InfoGANObjective(OBJECTIVES.config("infogan", {"cat": 3, "cont": 2}))
    G, D = FakeG(z_dim=9, code_cat=3, code_cont=2), FakeD()
    shared, own = {"G": G, "D": D, "Q": FakeQ(3, 2)}, {"G": G, "D": D, "Q": FakeQ(3, 2, "own")}
    obj.check(shared, schedule(obj))
    obj.check(own, schedule(obj, Qmain=("G", "Q")))
    with pytest.raises(UserError, match=r"phases.2.nets: Q reads D's features .* list \[G, D, Q\]"):
        obj.check(shared, schedule(obj, Qmain=("G", "Q")))
    with pytest.raises(UserError, match=r"phases.2.nets: Q has a trunk of its own.* list \[G, Q\]"):
        obj.check(own, schedule(obj))
    with pytest.raises(UserError, match="objective 'infogan' needs network Q"):
        obj.check({"G": G, "D": D}, schedule(obj))
    with pytest.raises(UserError, match="without a Qmain phase"):
        obj.check(shared, schedule(obj)[:2])
    with pytest.raises(UserError, match="phase Qmain of objective 'infogan' cannot train C"):
        obj.check({**shared, "C": FakeC()}, schedule(obj, Qmain=("G", "C")))
    assert G.calls == [] and D.calls == []  # checking runs no network


# ---------------------------------------------------------------- SGAN

def test_sgan_k_plus_1_losses_match_the_direct_formula():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    c = torch.tensor([0, -1, 2, -1, -1])  # K = 3; index 3 = fake
    p_real, p_fake = real.softmax(1), fake.softmax(1)
    sup = -(p_real[0, 0].log() + p_real[2, 2].log()) / 2
    unsup = -(1 - p_real[[1, 3, 4], 3]).log().mean()
    fake_term = -p_fake[:, 3].log().mean()
    terms = sgan_d_losses(real, c, fake)
    assert terms["sup"].item() == pytest.approx(sup.item(), rel=1e-12)
    assert terms["real"].item() == pytest.approx(unsup.item(), rel=1e-12)
    assert terms["fake"].item() == pytest.approx(fake_term.item(), rel=1e-12)
    assert sgan_g_loss(fake).item() == pytest.approx(-(1 - p_fake[:, 3]).log().mean().item(), rel=1e-12)
    unlabeled = sgan_d_losses(real, None, fake)  # no labels at all: no supervised term, no NaN
    assert unlabeled["sup"].item() == 0.0
    assert unlabeled["real"].item() == pytest.approx(-(1 - p_real[:, 3]).log().mean().item(), rel=1e-12)


def test_sgan_objective_scores_the_k_plus_1_head_of_an_unconditional_d():
    obj = SGANObjective(OBJECTIVES.config("sgan", {}))
    G, D, x = FakeG(), FakeD(aux_classes=4), reals(6)
    c = torch.tensor([1, -1, -1, 0, -1, 2])
    losses, stats = obj("Dmain", {"G": G, "D": D}, make_batch(6, img=x, c=c))
    assert all(h == ("class_logits",) for _, _, h in D.calls)
    with torch.no_grad():
        expect = sgan_d_losses(D.head("class_logits", x), c, D.head("class_logits", D.calls[-1][0]))
    for k in ("sup", "real", "fake"):
        assert losses[k].item() == pytest.approx(expect[k].item(), rel=1e-6)
    assert 0 <= stats["acc_labeled"].item() <= 1
    obj.check({"G": G, "D": D}, schedule(obj))
    with pytest.raises(UserError, match="unconditional"):
        obj.check({"G": G, "D": FakeD(num_classes=3, aux_classes=4)}, schedule(obj))
    with pytest.raises(UserError, match="needs D.aux_classes = K \\+ 1"):
        obj.check({"G": G, "D": FakeD()}, schedule(obj))


# ---------------------------------------------------------------- cGAN + classifier, AC-GAN

def test_cgan_classifier_c_phase_uses_only_real_images_labels_and_c_and_trains_only_c():
    obj = CGANClassifierObjective(OBJECTIVES.config("cgan_classifier", {}))
    assert obj.reals("Cmain") == "draw" and obj.phases["Cmain"].trains == ("C",)
    assert [(p.name, tuple(p.nets)) for p in obj.default_phases] == [("Dmain", ("D",)), ("Cmain", ("C",)),
                                                                     ("Gmain", ("G",))]
    G, D, C, x = FakeG(num_classes=3), FakeD(), FakeC(3), reals()
    nets = {"G": G, "D": D, "C": C}
    obj.check(nets, schedule(obj))
    with pytest.raises(UserError, match=r"phases.1.nets: phase Cmain .* cannot train D \(it trains C\)"):
        obj.check(nets, schedule(obj, Cmain=("C", "D")))
    c = torch.tensor([0, 1, 2, 0, 1, 2, 0, -1])
    losses, _ = obj("Cmain", nets, make_batch(img=x, c=c))
    assert G.calls == [] and D.calls == []
    assert len(C.calls) == 1 and C.calls[0] is x
    with torch.no_grad():
        logits = C.net(x.flatten(1))
    assert losses["cls_real"].item() == pytest.approx(F.cross_entropy(logits[:7], c[:7]).item(), rel=1e-6)
    losses["cls_real"].backward()
    assert C.net.weight.grad.abs().sum() > 0
    assert all(p.grad is None for net in (G, D) for p in net.parameters())


def test_cgan_classifier_g_loss_classifies_g_of_z_c_as_the_requested_c():
    obj = CGANClassifierObjective(OBJECTIVES.config("cgan_classifier", {"adversarial": "wgan", "class_weight": 2.0}))
    G, D, C = FakeG(num_classes=3), FakeD(), FakeC(3)
    losses, _ = obj("Gmain", {"G": G, "D": D, "C": C}, make_batch())
    _, c = G.calls[-1]
    img = D.calls[-1][0]
    assert len(C.calls) == 1 and C.calls[0] is img  # C judges the very fake D scores
    with torch.no_grad():
        ce = F.cross_entropy(C.net(img.flatten(1)), c)
        adv = -D.head("logits", img).mean()
    assert losses["cls"].item() == pytest.approx(2.0 * ce.item(), rel=1e-6)
    assert losses["adv"].item() == pytest.approx(adv.item(), rel=1e-6)
    losses["cls"].backward()
    assert G.A.grad.abs().sum() > 0  # the class loss reaches G through the fake


def test_cgan_classifier_check_needs_a_conditional_g_and_a_c_with_its_classes():
    obj = CGANClassifierObjective(OBJECTIVES.config("cgan_classifier", {}))
    ok = {"G": FakeG(num_classes=3), "D": FakeD(), "C": FakeC(3)}
    obj.check(ok, schedule(obj))
    with pytest.raises(UserError, match=r"needs C.classes = G.num_classes \(3\), got 4"):
        obj.check({**ok, "C": FakeC(4)}, schedule(obj))
    with pytest.raises(UserError, match="needs a conditional G"):
        obj.check({**ok, "G": FakeG(), "C": FakeC(2)}, schedule(obj))
    with pytest.raises(UserError, match="phases.1: phase Cmain of objective 'cgan_classifier' needs network C"):
        obj.check({"G": ok["G"], "D": ok["D"]}, schedule(obj))


def test_acgan_d_loss_is_source_bce_plus_class_ce_on_reals_and_fakes():
    obj = ACGANObjective(OBJECTIVES.config("acgan", {}))
    G, D, x = FakeG(num_classes=3), FakeD(aux_classes=3), reals()
    c_real = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    losses, _ = obj("Dmain", {"G": G, "D": D}, make_batch(img=x, c=c_real))
    fake, c_fake = D.calls[-1][0], G.calls[-1][1]
    with torch.no_grad():
        lr, lf = D.head("logits", x), D.head("logits", fake)
        expect = {"real": F.binary_cross_entropy_with_logits(lr, torch.ones(8)),
                  "fake": F.binary_cross_entropy_with_logits(lf, torch.zeros(8)),
                  "cls_real": F.cross_entropy(D.head("class_logits", x), c_real),
                  "cls_fake": F.cross_entropy(D.head("class_logits", fake), c_fake)}
    assert set(losses) == set(expect)
    for k, v in expect.items():
        assert losses[k].item() == pytest.approx(v.item(), rel=1e-5)
    obj.check({"G": G, "D": D}, schedule(obj))
    with pytest.raises(UserError, match=r"needs D.aux_classes = G.num_classes \(3\), got 4"):
        obj.check({"G": G, "D": FakeD(aux_classes=4)}, schedule(obj))


# ---------------------------------------------------------------- few labels, held-out images

def test_labels_per_class_keeps_exactly_k_labels_and_holdout_excludes_exactly_n_images():
    images, labels = load_mnist(None)
    cfg = DataConfig(resolution=28, labels_per_class=3, holdout=250)
    data = build_dataset(cfg, seed=0)
    train, held = holdout_split(len(images), 250)
    assert len(data) == len(images) - 250 and len(held) == 250
    assert not set(train) & set(held) and len(set(train) | set(held)) == len(images)
    assert torch.equal(data.images[:, 0], torch.from_numpy(images[train]))
    kept = data.labels.numpy()
    for k in range(10):
        assert (kept == k).sum() == 3
        first = np.flatnonzero(labels[train] == k)[:3]  # the first three of the class, in dataset order
        assert (kept[first] == k).all()
    assert (kept == -1).sum() == len(data) - 30
    other = build_dataset(cfg, seed=7)  # the split and the labels kept do not depend on the run seed
    assert torch.equal(other.labels, data.labels) and torch.equal(other.images, data.images)
    plain = build_dataset(DataConfig(resolution=28), seed=0)
    assert len(plain) == len(images) and torch.equal(plain.labels, torch.from_numpy(labels))
