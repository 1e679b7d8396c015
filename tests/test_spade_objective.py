"""SPADE's losses against hand computations: hinge over scales, feature matching, the KL term's closed
form, the VGG19 perceptual loss from a local weights file (one-line errors without one)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hifigan.errors import UserError
from hifigan.nn.vgg import VGG19Features, load_vgg19
from hifigan.objectives.spade import (SPADEObjective, feature_matching, hinge_d, hinge_g, kl_normal, perceptual)
from hifigan.registry import OBJECTIVES


def test_feature_matching_matches_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    shapes = [(2, 4, 8, 8), (2, 8, 4, 4), (2, 1, 3, 3)]  # two intermediate features, then the logits
    fake = [[torch.randn(s, generator=g) for s in shapes] for _ in range(2)]
    real = [[torch.randn(s, generator=g) for s in shapes] for _ in range(2)]
    hand = 0.0
    for k in range(2):  # scales
        for i in range(2):  # features, logits excluded
            hand += (fake[k][i] - real[k][i]).abs().sum().item() / fake[k][i].numel()
    hand /= 2
    assert feature_matching(fake, real).item() == pytest.approx(hand, rel=1e-6)
    # the real features are targets: no gradient reaches them
    real_req = [[r.clone().requires_grad_() for r in k] for k in real]
    fake_req = [[f.clone().requires_grad_() for f in k] for k in fake]
    feature_matching(fake_req, real_req).backward()
    assert all(r.grad is None for k in real_req for r in k)
    assert fake_req[0][0].grad is not None and fake_req[0][2].grad is None


def test_kl_term_equals_the_closed_form():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5, 7), torch.ones(5, 7))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert kl_normal(mu, logvar).item() == pytest.approx(expected.item(), rel=1e-5)
    assert kl_normal(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_hinge_terms_average_over_scales():
    real = [torch.tensor([[0.5, 2.0]]), torch.tensor([[-1.0]])]
    fake = [torch.tensor([[0.5, -2.0]]), torch.tensor([[1.0]])]
    r, f = hinge_d(real, fake)
    assert r.item() == pytest.approx(((0.5 + 0.0) / 2 + 2.0) / 2)
    assert f.item() == pytest.approx(((1.5 + 0.0) / 2 + 2.0) / 2)
    assert hinge_g(fake).item() == pytest.approx(-((0.5 - 2.0) / 2 + 1.0) / 2)


def _vgg_file(tmp_path):
    torch.manual_seed(0)
    state = VGG19Features().state_dict()
    state["features.30.weight"] = torch.zeros(512, 512, 3, 3)  # layers past relu5_1 and the classifier: ignored
    state["classifier.0.weight"] = torch.zeros(8, 8)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    return path


def test_vgg19_loads_from_a_torchvision_state_dict_and_the_perceptual_loss_behaves(tmp_path):
    torch.set_num_threads(1)
    vgg = load_vgg19(_vgg_file(tmp_path))
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    feats = vgg(x)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert perceptual(vgg, x, x).item() == 0.0
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_()
    loss = perceptual(vgg, y, x)
    loss.backward()
    assert loss.item() > 0 and y.grad.abs().sum() > 0
    gray = x[:, :1]  # one channel is repeated to three
    assert perceptual(vgg, gray, gray).item() == 0.0


def test_vgg19_needs_a_file_and_refuses_a_wrong_one(tmp_path):
    with pytest.raises(UserError, match="objective.vgg"):
        OBJECTIVES.build("spade", {"lambda_vgg": 10.0}).load_files()
    with pytest.raises(UserError, match="no such VGG19 weights file"):
        OBJECTIVES.build("spade", {"lambda_vgg": 10.0, "vgg": str(tmp_path / "missing.pth")}).load_files()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="not a readable VGG19"):
        load_vgg19(bad)
    other = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, other)
    with pytest.raises(UserError, match="not the VGG19"):
        load_vgg19(other)
    obj = OBJECTIVES.build("spade", {"lambda_vgg": 10.0, "vgg": str(_vgg_file(tmp_path))})
    obj.load_files()
    assert isinstance(obj, SPADEObjective) and obj.vgg is not None


def test_objective_refuses_absurd_weights():
    from hifigan.config import ConfigError
    with pytest.raises((UserError, ConfigError, ValueError)):
        OBJECTIVES.build("spade", {"lambda_feat": -1.0, "lambda_vgg": 0.0})
    with pytest.raises((UserError, ConfigError, ValueError)):
        OBJECTIVES.build("spade", {"lambda_kld": float("nan"), "lambda_vgg": 0.0})
