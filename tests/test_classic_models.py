"""The classic D families (MLP, DCGAN) and the networks of their own that used to be D heads: D's heads
(logits, the AC-GAN / SGAN classifier, the penultimate features), InfoGAN's Q on D's features or on a trunk
of its own, the separate classifier C, norm choices, spectral normalization, the one-line errors of the
old D keys, and today's parameter names / counts when every option is off."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hifigan.config import load_config
from hifigan.errors import UserError
from hifigan.models import count_params
from hifigan.nn.codes import apply_codes, codes_from_normal
from hifigan.nn.spectral import SpectralNorm, apply_spectral_norm
from hifigan.registry import CLASSIFIERS, DISCRIMINATORS, ENCODERS, GENERATORS, Q_NETWORKS

N = 4
TINY = {"dcgan": {"resolution": 16, "width": 4}, "mlp": {"resolution": 8, "hidden": [16, 8]}}
FEATURES = {"dcgan": 8 * 4 * 4, "mlp": 8}  # TINY D's features: its 4x4 map of 8 channels; its last hidden layer


def make_d(arch, **kw):
    torch.manual_seed(0)
    return DISCRIMINATORS.build(arch, {**TINY[arch], **kw})


def make_q(arch, **kw):
    torch.manual_seed(2)
    return Q_NETWORKS.build(arch, {**TINY[arch], "q_cat": 10, "q_cont": 2, **kw})


def make_c(arch, **kw):
    torch.manual_seed(3)
    return CLASSIFIERS.build(arch, {**TINY[arch], "classes": 10, **kw})


def run_q(Q, D, img, c=None):
    """Q the way InfoGAN's Qmain runs it: on D's features (trunk shared) or on the image (trunk own)."""
    return Q(D(img, c, heads=("features",))["features"]) if Q.on_features else Q(img, c)


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


def param_ids(module: nn.Module) -> set:
    return {id(p) for p in module.parameters()}


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
    off = {"aux_classes": 0, "spectral_norm": False, **({"norm": "batch"} if arch == "dcgan" else {})}
    D, D_off = DISCRIMINATORS.build(arch, d_cfg), DISCRIMINATORS.build(arch, {**d_cfg, **off})
    assert list(D.state_dict()) == list(D_off.state_dict()) == keys
    assert count_params(GENERATORS.build(arch, g_cfg)) == n_g and count_params(D) == n_d
    assert D.partial  # always: a phase may use only D's features (InfoGAN's shared Q)


def test_legacy_batch_norm_false_means_norm_none():
    D = make_d("dcgan", batch_norm=False)
    assert D.cfg.norm == "none" and D.cfg.batch_norm is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    with pytest.raises(UserError, match="contradicts norm"):
        make_d("dcgan", batch_norm=True, norm="layer")


# -- D's heads; Q and C ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_every_head_has_its_shape(arch, num_classes):
    D = make_d(arch, aux_classes=11, num_classes=num_classes).eval()
    img, c = inputs(D)
    out = D(img, c, heads=True)
    assert list(out) == ["logits", "class_logits", "features"]
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"logits": (N,), "class_logits": (N, 11), "features": (N, FEATURES[arch])}
    assert torch.equal(D(img, c), out["logits"])  # the plain call is unchanged
    assert (D.aux_classes, D.feature_dim, D.num_classes) == (11, FEATURES[arch], num_classes)
    assert D.partial
    assert torch.allclose(D.class_head(out["features"]), out["class_logits"])  # the classifier reads the features
    sub = D(img, c, heads=("features", "logits"))
    assert list(sub) == ["logits", "features"] and torch.equal(sub["features"], out["features"])


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("trunk", ["shared", "own"])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_q_and_c_networks_give_their_outputs_shapes(arch, trunk, num_classes):
    D = make_d(arch, num_classes=num_classes).eval()
    Q = make_q(arch, trunk=trunk, num_classes=num_classes).eval()
    img, c = inputs(D)
    assert Q.on_features == (trunk == "shared") and Q.in_features == D.feature_dim
    q = run_q(Q, D, img, c)
    assert {k: tuple(v.shape) for k, v in q.items()} == {"q_cat": (N, 10), "q_cont": (N, 2)}
    assert list(q) == ["q_cat", "q_cont"] and (Q.q_cat, Q.q_cont) == (10, 2)
    only_cont = make_q(arch, trunk=trunk, num_classes=num_classes, q_cat=0, q_cont=3).eval()
    assert {k: tuple(v.shape) for k, v in run_q(only_cont, D, img, c).items()} == {"q_cont": (N, 3)}
    C = make_c(arch).eval()
    assert tuple(C(img).shape) == (N, 10) and C.classes == 10


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_only_configured_heads_are_returned_and_others_rejected(arch):
    D = make_d(arch)
    img, _ = inputs(D)
    assert list(D(img, heads=True)) == ["logits", "features"]
    with pytest.raises(ValueError, match="no head 'class_logits'"):
        D(img, heads=("class_logits",))
    with pytest.raises(ValueError, match="no head 'q_cat'"):  # Q's outputs are Q's, not D's
        D(img, heads=("q_cat",))


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_classifier_is_a_network_of_its_own_that_never_sees_the_label(arch):
    D, C = make_d(arch, num_classes=10), make_c(arch)
    img, c = inputs(D)
    assert not param_ids(D) & param_ids(C)
    with pytest.raises(TypeError):
        C(img, c)  # a conditional D takes the label; C predicts it
    F.cross_entropy(C(img), c).backward()
    assert all(g is not None and g.abs().sum() > 0 for g in grads_of(C).values())
    assert all(g is None for g in grads_of(D).values())


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_own_q_trunk_shares_no_parameter_with_d_and_reads_the_label_like_d(arch):
    D = make_d(arch, aux_classes=10, num_classes=10)
    Q = make_q(arch, trunk="own", num_classes=10)
    img, c = inputs(D)
    d_calls = count_calls(D.net[0])
    assert not Q.on_features and Q.trunk is not None
    assert param_ids(D) and param_ids(Q) and not param_ids(D) & param_ids(Q)
    q = Q(img, c)
    (q["q_cat"].square().mean() + q["q_cont"].square().mean()).backward()
    assert d_calls == [] and all(g is None for g in grads_of(D).values())
    assert all(g is not None and g.abs().sum() > 0 for g in grads_of(Q).values())
    Q.eval()
    with torch.no_grad():
        assert not torch.allclose(Q(img, c)["q_cat"], Q(img, (c + 1) % 10)["q_cat"])


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_shared_q_reads_d_features_and_its_gradient_reaches_d_trunk_only(arch):
    D, Q = make_d(arch, aux_classes=10), make_q(arch, trunk="shared")
    img, _ = inputs(D)
    d_calls = count_calls(D.net[0])
    assert Q.on_features and Q.trunk is None and Q.in_features == D.feature_dim
    assert {k for k, _ in Q.named_parameters()} == {f"{h}.{k}" for h in ("q_cat_head", "q_cont_head")
                                                    for k in ("weight", "bias")}  # just the heads
    q = Q(D(img, heads=("features",))["features"])
    (q["q_cat"].square().mean() + q["q_cont"].square().mean()).backward()
    assert len(d_calls) == 1
    assert D.net[0].weight.grad is not None and D.net[0].weight.grad.abs().sum() > 0  # D's trunk learns from Q
    assert D.net[-1].weight.grad is None and D.class_head.weight.grad is None  # the logit layer, class head: no
    assert all(g is not None and g.abs().sum() > 0 for g in grads_of(Q).values())


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_gradients_reach_every_parameter_of_the_heads_and_networks_used(arch, spectral_norm):
    D = make_d(arch, aux_classes=11, spectral_norm=spectral_norm)
    Q = make_q(arch, trunk="own", spectral_norm=spectral_norm)
    img, c = inputs(D)
    sum(v.square().mean() for v in D(img, c, heads=True).values()).backward()
    sum(v.square().mean() for v in Q(img).values()).backward()
    for net in (D, Q):
        missing = [k for k, g in grads_of(net).items() if g is None or not g.abs().sum() > 0]
        assert missing == []
    D.zero_grad(set_to_none=True)
    D(img, heads=("features",))["features"].square().mean().backward()
    used = {k for k, g in grads_of(D).items() if g is not None}
    logit_layer = f"net.{len(D.net) - 1}."
    assert used and used == {k for k in grads_of(D) if not k.startswith(("class_head.", logit_layer))}


# -- config errors --------------------------------------------------------------------------------

def test_bad_d_q_and_c_options_fail_with_the_key_and_the_fix():
    for kw, msg in [({"norm": "instance"}, "not allowed"), ({"aux_classes": 1}, "aux_classes must be 0")]:
        with pytest.raises(UserError, match=msg):
            make_d("dcgan", **kw)
    for kw, msg in [({"q_cat": 1}, "q_cat must be 0 or >= 2"), ({"q_cont": -1}, "q_cont >= 0"),
                    ({"q_cat": 0, "q_cont": 0}, "at least one code"), ({"trunk": "separate"}, "trunk must be shared")]:
        for arch in ("dcgan", "mlp"):
            with pytest.raises(UserError, match=msg):
                make_q(arch, **kw)
    with pytest.raises(UserError, match="not allowed"):
        make_q("dcgan", norm="instance")
    for arch in ("dcgan", "mlp"):
        with pytest.raises(UserError, match="classes must be >= 2"):
            make_c(arch, classes=1)


@pytest.mark.parametrize("d, key, says, fix", [
    ({"arch": "dcgan", "q_cat": 10}, "D.q_cat", "InfoGAN's Q is network Q now", "optim.Q"),
    ({"arch": "mlp", "q_cont": 2}, "D.q_cont", "InfoGAN's Q is network Q now", "trunk: shared"),
    ({"arch": "dcgan", "q_separate": True}, "D.q_separate", "InfoGAN's Q is network Q now", "own"),
    ({"arch": "mlp", "classifier_classes": 10}, "D.classifier_classes", "the separate classifier is network C now",
     "optim.C"),
    ({"arch": "vae_encoder"}, "D.arch", "the VAE encoder is network E now", "optim.E"),
])
def test_old_d_keys_and_the_vae_encoder_say_in_one_line_where_they_moved(d, key, says, fix):
    with pytest.raises(UserError) as e:
        load_config(None, mapping={"D": d})
    text = str(e.value)
    assert text.startswith(f"config: {key}: ") and says in text and fix in text and "\n" not in text


def test_the_registry_says_where_d_keys_and_the_vae_encoder_moved():
    with pytest.raises(UserError, match="discriminator 'vae_encoder': the VAE encoder is network E now"):
        DISCRIMINATORS.build("vae_encoder", {})
    assert "vae_encoder" not in DISCRIMINATORS.names() and "dcgan" in ENCODERS.names()
    E = ENCODERS.build("dcgan", {"resolution": 16, "width": 4, "z_dim": 5})
    mu, logvar = E(torch.randn(N, 1, 16, 16))
    assert mu.shape == logvar.shape == (N, 5)
    for arch in ("dcgan", "mlp"):
        with pytest.raises(UserError, match="q_cat: InfoGAN's Q is network Q now"):
            make_d(arch, q_cat=10)
        with pytest.raises(UserError, match="classifier_classes: the separate classifier is network C now"):
            make_d(arch, classifier_classes=10)
        with pytest.raises(UserError, match="unknown key"):  # a plain typo is still a typo
            make_d(arch, aux_clases=10)


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


# -- spectral normalization --------------------------------------------------------------------

def _sn_layers(D):
    return [m for m in D.modules() if isinstance(m, SpectralNorm)]


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("trunk", ["shared", "own"])
def test_spectral_norm_gives_every_weight_of_d_and_q_unit_spectral_norm(arch, trunk):
    norm = {"norm": "none"} if arch == "dcgan" else {}
    D = make_d(arch, spectral_norm=True, aux_classes=10, **norm)
    Q = make_q(arch, spectral_norm=True, trunk=trunk, q_cat=4, **norm)
    wrapped = []
    for net in (D, Q):
        plain = [m for m in net.modules() if type(m) in (nn.Linear, nn.Conv2d)]
        assert len(_sn_layers(net)) == len(plain) > 0  # every conv / linear of D and its heads, of Q and its trunk
        wrapped += _sn_layers(net)
    with torch.no_grad():
        for m in wrapped:  # a deliberately large weight, far from sigma = 1
            m.module.weight.mul_(7.0)
        img, _ = inputs(D)
        for _ in range(60):  # one power iteration per training forward
            D(img, heads=True)
            run_q(Q, D, img)
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
    D = make_d(arch, spectral_norm=True, aux_classes=3)
    img, c = inputs(D)
    for _ in range(3):
        D(img, heads=True)
    state = D.state_dict()
    assert "net.0.u" in state and "net.0.v" in state and "net.0.module.weight" in state
    torch.manual_seed(123)  # a fresh net: other weights and other u, v
    fresh = DISCRIMINATORS.build(arch, {**TINY[arch], "spectral_norm": True, "aux_classes": 3})
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
