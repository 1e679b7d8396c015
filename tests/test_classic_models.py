"""The classic D families (MLP, DCGAN): the heads interface (AC-GAN / SGAN classifier, InfoGAN Q,
a separate classifier), which trunks each head runs, norm choices, spectral normalization, and
today's parameter names / counts when every option is off."""
import pytest
import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.models import count_params
from hifigan.nn.codes import apply_codes, codes_from_normal
from hifigan.nn.spectral import SpectralNorm, apply_spectral_norm
from hifigan.registry import DISCRIMINATORS, GENERATORS

N = 4
TINY = {"dcgan": {"resolution": 16, "width": 4}, "mlp": {"resolution": 8, "hidden": [16, 8]}}
ALL_HEADS = {"aux_classes": 11, "q_cat": 10, "q_cont": 2, "classifier_classes": 10}


def make_d(arch, **kw):
    torch.manual_seed(0)
    return DISCRIMINATORS.build(arch, {**TINY[arch], **kw})


def inputs(D):
    res = D.cfg.resolution
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, 1, res, res, generator=g), torch.randint(0, 10, (N,), generator=g)


def count_calls(module: nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def grads_of(module: nn.Module) -> dict:
    return {k: p.grad for k, p in module.named_parameters()}


# -- all options off: today's networks ----------------------------------------------------------

DCGAN_KEYS = (["net.0.weight", "net.2.weight"]
              + [f"net.3.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
              + ["net.5.weight"]
              + [f"net.6.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
              + ["net.8.weight"])
MLP_KEYS = [f"net.{i}.{k}" for i in (0, 3, 6, 9) for k in ("weight", "bias")]


@pytest.mark.parametrize("arch, g_cfg, d_cfg, keys, n_g, n_d", [
    ("dcgan", {"resolution": 32, "width": 64}, {"resolution": 32, "width": 64}, DCGAN_KEYS, 1_066_880, 661_248),
    ("mlp", {"hidden": [256, 512, 1024]}, {"hidden": [1024, 512, 256], "dropout": 0.3}, MLP_KEYS, 1_486_352, 1_460_225),
])
def test_options_off_keep_todays_parameter_names_and_counts(arch, g_cfg, d_cfg, keys, n_g, n_d):
    off = {"aux_classes": 0, "q_cat": 0, "q_cont": 0, "q_separate": False, "classifier_classes": 0,
           "spectral_norm": False, **({"norm": "batch"} if arch == "dcgan" else {})}
    D, D_off = DISCRIMINATORS.build(arch, d_cfg), DISCRIMINATORS.build(arch, {**d_cfg, **off})
    assert list(D.state_dict()) == list(D_off.state_dict()) == keys
    assert count_params(GENERATORS.build(arch, g_cfg)) == n_g and count_params(D) == n_d
    assert not D.partial


def test_legacy_batch_norm_false_means_norm_none():
    D = make_d("dcgan", batch_norm=False)
    assert D.cfg.norm == "none" and D.cfg.batch_norm is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    with pytest.raises(UserError, match="contradicts norm"):
        make_d("dcgan", batch_norm=True, norm="layer")


# -- heads -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("q_separate", [False, True])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_every_head_has_its_shape(arch, q_separate, num_classes):
    D = make_d(arch, **ALL_HEADS, q_separate=q_separate, num_classes=num_classes).eval()
    img, c = inputs(D)
    out = D(img, c, heads=True)
    assert list(out) == ["logits", "class_logits", "q_cat", "q_cont", "classifier_logits"]
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"logits": (N,), "class_logits": (N, 11), "q_cat": (N, 10), "q_cont": (N, 2),
                      "classifier_logits": (N, 10)}
    assert torch.equal(D(img, c), out["logits"])  # the plain call is unchanged
    assert (D.aux_classes, D.q_cat, D.q_cont, D.classifier_classes, D.num_classes) == (11, 10, 2, 10, num_classes)
    assert D.partial
    sub = D(img, c, heads=("q_cont", "logits"))
    assert list(sub) == ["logits", "q_cont"] and torch.equal(sub["q_cont"], out["q_cont"])


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_only_configured_heads_are_returned_and_others_rejected(arch):
    D = make_d(arch, q_cont=3)
    img, _ = inputs(D)
    assert list(D(img, heads=True)) == ["logits", "q_cont"]
    with pytest.raises(ValueError, match="no head 'class_logits'"):
        D(img, heads=("class_logits",))


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_classifier_alone_does_not_run_the_discriminator_and_vice_versa(arch):
    D = make_d(arch, classifier_classes=10, num_classes=10)
    img, c = inputs(D)
    d_calls, cls_calls = count_calls(D.net[0]), count_calls(D.classifier)
    out = D(img, heads=("classifier_logits",))  # a conditional D: the classifier needs no labels
    assert list(out) == ["classifier_logits"] and d_calls == [] and len(cls_calls) == 1
    D(img, c)
    D(img, c, heads=("logits",))
    assert len(d_calls) == 2 and len(cls_calls) == 1


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_separate_q_trunk_runs_alone_and_shares_no_parameter_with_logits(arch):
    D = make_d(arch, q_cat=10, q_cont=2, q_separate=True, aux_classes=10)
    img, c = inputs(D)
    d_calls, q_calls = count_calls(D.net[0]), count_calls(D.q_net)
    q = D(img, heads=("q_cat", "q_cont"))
    assert d_calls == [] and len(q_calls) == 1
    logits_path = {id(p) for m in (D.net, D.class_head) for p in m.parameters()}
    q_path = {id(p) for m in (D.q_net, D.q_cat_head, D.q_cont_head) for p in m.parameters()}
    assert logits_path and q_path and not logits_path & q_path
    (q["q_cat"].square().mean() + q["q_cont"].square().mean()).backward()
    assert all(g is None for g in grads_of(D.net).values())
    assert all(g is not None for g in grads_of(D.q_net).values())
    D.zero_grad(set_to_none=True)
    D(img, heads=("logits",))["logits"].square().mean().backward()
    assert len(q_calls) == 1 and all(g is None for g in grads_of(D.q_net).values())


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_shared_q_heads_sit_on_the_discriminator_trunk(arch):
    D = make_d(arch, q_cat=10)
    img, _ = inputs(D)
    d_calls = count_calls(D.net[0])
    D(img, heads=("q_cat",)).get("q_cat").square().mean().backward()
    assert len(d_calls) == 1 and D.q_net is None
    assert D.net[0].weight.grad is not None and D.net[-1].weight.grad is None  # trunk yes, logit layer no


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_gradients_reach_every_parameter_of_the_heads_used(arch, spectral_norm):
    D = make_d(arch, **ALL_HEADS, q_separate=True, spectral_norm=spectral_norm)
    img, c = inputs(D)
    sum(v.square().mean() for v in D(img, c, heads=True).values()).backward()
    missing = [k for k, g in grads_of(D).items() if g is None or not g.abs().sum() > 0]
    assert missing == []
    D.zero_grad(set_to_none=True)
    D(img, heads=("classifier_logits",))["classifier_logits"].square().mean().backward()
    used = {k for k, g in grads_of(D).items() if g is not None}
    assert used == {f"classifier.{k}" for k, _ in D.classifier.named_parameters()}


# -- norms -----------------------------------------------------------------------------------------

def test_norm_none_has_no_batch_norm_and_layer_norm_is_per_sample():
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in make_d("dcgan", norm="none").modules())
    D = make_d("dcgan", norm="layer", aux_classes=10)  # training mode: batch statistics would mix samples
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in D.modules())
    img, _ = inputs(D)
    assert torch.allclose(D(img)[:1], D(img[:1]), atol=1e-6)  # what a per-sample gradient penalty needs
    B = make_d("dcgan")
    assert not torch.allclose(B(img)[:1], B(img[:1]), atol=1e-6)  # batch norm does mix them


def test_bad_d_options_fail_with_the_key_and_the_fix():
    for kw, msg in [({"norm": "instance"}, "not allowed"), ({"aux_classes": 1}, "aux_classes must be 0"),
                    ({"q_cont": -1}, "q_cont must be >= 0"), ({"q_separate": True}, "q_separate needs Q heads")]:
        with pytest.raises(UserError, match=msg):
            make_d("dcgan", **kw)
    with pytest.raises(UserError, match="classifier_classes must be 0"):
        make_d("mlp", classifier_classes=-2)


# -- spectral normalization --------------------------------------------------------------------

def _sn_layers(D):
    return [m for m in D.modules() if isinstance(m, SpectralNorm)]


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_spectral_norm_gives_every_weight_unit_spectral_norm(arch):
    D = make_d(arch, spectral_norm=True, norm="none", aux_classes=10, q_cat=4) if arch == "dcgan" else \
        make_d(arch, spectral_norm=True, aux_classes=10, q_cat=4)
    wrapped = _sn_layers(D)
    plain = [m for m in D.modules() if type(m) in (nn.Linear, nn.Conv2d)]
    assert len(wrapped) == len(plain)  # every conv / linear of D and its heads
    with torch.no_grad():
        for m in wrapped:  # a deliberately large weight, far from sigma = 1
            m.module.weight.mul_(7.0)
        img, _ = inputs(D)
        for _ in range(60):  # one power iteration per training forward
            D(img, heads=True)
    for m in wrapped:
        w = m.weight().detach().flatten(1)
        assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=2e-3)


def test_spectral_norm_power_iteration_converges_from_a_random_start():
    torch.manual_seed(0)
    m = SpectralNorm(nn.Conv2d(6, 5, 3), init_iterations=0)
    true_sigma = torch.linalg.matrix_norm(m.module.weight.detach().flatten(1), ord=2)
    errors = []
    x = torch.randn(2, 6, 8, 8)
    for _ in range(30):
        m(x)
        errors.append(abs(m.sigma().item() - true_sigma.item()) / true_sigma.item())
    assert errors[-1] < 1e-4 and errors[-1] < errors[0]
    u = m.u.clone()
    m.eval()(x)
    assert torch.equal(m.u, u)  # eval forwards reuse u, v


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_spectral_norm_u_v_survive_a_state_dict_round_trip(arch):
    D = make_d(arch, spectral_norm=True, q_cont=2)
    img, c = inputs(D)
    for _ in range(3):
        D(img, heads=True)
    state = D.state_dict()
    assert "net.0.u" in state and "net.0.v" in state and "net.0.module.weight" in state
    torch.manual_seed(123)  # a fresh net: other weights and other u, v
    fresh = DISCRIMINATORS.build(arch, {**TINY[arch], "spectral_norm": True, "q_cont": 2})
    assert not torch.equal(fresh.state_dict()["net.0.u"], state["net.0.u"])
    fresh.load_state_dict(state)
    D.eval(), fresh.eval()
    for k, v in D(img, heads=True).items():
        assert torch.equal(v, fresh(img, heads=True)[k]), k


def test_spectral_norm_d_supports_double_backward():
    D = make_d("dcgan", spectral_norm=True, norm="none")
    img, _ = inputs(D)
    img.requires_grad_(True)
    grad, = torch.autograd.grad(D(img).sum(), img, create_graph=True)
    grad.square().sum().backward()  # R1 / gradient penalty through spectrally normalized weights
    assert D.net[0].module.weight.grad is not None


def test_spectral_norm_rejects_layers_it_cannot_normalize():
    with pytest.raises(TypeError, match="nn.Linear or nn.Conv2d"):
        SpectralNorm(nn.ConvTranspose2d(3, 3, 4))
    seq = apply_spectral_norm(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)))
    assert [type(m) for m in seq] == [SpectralNorm, nn.ReLU, SpectralNorm]


# ---------------------------------------------------------------- InfoGAN latent codes in G

def test_codes_from_a_standard_normal_z_follow_the_infogan_prior():
    z = torch.randn(40000, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    category, values = codes_from_normal(z, cat=4, cont=2)
    freq = torch.bincount(category, minlength=4).double() / len(z)
    assert (freq - 0.25).abs().max() < 0.01  # uniform category (argmax of iid normals)
    assert values.min() > -1 and values.max() < 1
    # uniform in (-1, 1): the CDF at -0.5, 0 and 0.5 is 0.25, 0.5, 0.75 within sampling error
    for t, p in ((-0.5, 0.25), (0.0, 0.5), (0.5, 0.75)):
        assert abs((values <= t).double().mean().item() - p) < 0.01
    assert values.mean().abs() < 0.01 and abs(values.var().item() - 1 / 3) < 0.01


@pytest.mark.parametrize("arch,cfg", [("dcgan", {"resolution": 8, "width": 4}),
                                      ("mlp", {"resolution": 8, "hidden": [16]})])
def test_generator_reads_codes_from_z_or_takes_them_explicitly(arch, cfg):
    G = GENERATORS.build(arch, {"z_dim": 7, "code_cat": 3, "code_cont": 2, **cfg}).eval()
    z = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    category, values = codes_from_normal(z, 3, 2)
    assert torch.equal(G(z), G(z, codes=(category, values)))
    fed = apply_codes(z, 3, 2)
    assert torch.equal(fed[:, :2], z[:, :2]) and torch.equal(fed[:, 2:5].argmax(1), category)
    assert torch.equal(fed[:, 2:5].sum(1), torch.ones(5)) and torch.allclose(fed[:, 5:], values)
    # an explicit category or code changes the image; the noise entries stay the seed's
    other = (category + 1) % 3
    assert not torch.allclose(G(z), G(z, codes=(other, None)))
    assert torch.equal(apply_codes(z, 3, 2, other, None)[:, 5:], fed[:, 5:])
    two = torch.full((5, 2), 2.0)  # outside the trained [-1, 1]: a traversal may extrapolate
    assert torch.equal(apply_codes(z, 3, 2, None, two)[:, 5:], two)
    plain = GENERATORS.build(arch, {"z_dim": 7, **cfg})
    assert plain.code_cat == 0 and torch.equal(apply_codes(z, 0, 0), z)


def test_generator_codes_must_fit_in_z():
    with pytest.raises(UserError, match="z_dim"):
        GENERATORS.build("dcgan", {"z_dim": 4, "code_cat": 3, "code_cont": 2, "resolution": 8})
    with pytest.raises(UserError, match="code_cat = 0 or >= 2"):
        GENERATORS.build("mlp", {"z_dim": 8, "code_cat": 1})
