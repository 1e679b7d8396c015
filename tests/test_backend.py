"""The Backend interface: a backend defined here, in the test file, trains through the unchanged
trainer, and the Accelerate backend's handles own optimizer, scaler and state."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
import torch

from hifigan.config import load_config
from hifigan.registry import BACKENDS
from hifigan.train import process
from hifigan.train.phases import build_optimizer, optimizer_settings
from hifigan.train.trainer import Trainer
from conftest import latest_ckpt, read_weights, tiny_overrides


class ToyHandle:
    """A network on one process with a plain torch optimizer; counts what the trainer asks."""

    def __init__(self, name, module, plan, log):
        self.name, self.module, self.plan, self.log = name, module, plan, log
        self.opt = build_optimizer(module.parameters(), plan.cfg, plan.lazy_ratio)

    def __call__(self, *args, **kwargs):
        self.log.append(("forward", self.name))
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def micro_step(self, boundary, joint=(), second_order=False):
        self.log.append(("micro_step", self.name, boundary, tuple(h.name for h in joint)))
        yield

    def backward(self, loss, joint=()):
        self.log.append(("backward", self.name, tuple(h.name for h in joint)))
        loss.backward()

    def step(self, joint=(), loss_finite=True):
        norms = {}
        for h in (self, *joint):
            params = [p for p in h.module.parameters() if p.grad is not None]
            norms[h.name] = torch.nn.utils.clip_grad_norm_(params, float("inf"))
        applied = loss_finite and all(bool(torch.isfinite(n)) for n in norms.values())
        for h in (self, *joint):
            if applied:
                h.opt.step()
            h.opt.zero_grad(set_to_none=True)
        self.log.append(("step", self.name, tuple(norms)))
        return norms, applied

    def apply_settings(self):
        for g in self.opt.param_groups:
            g.update(optimizer_settings(self.plan.cfg, self.plan.lazy_ratio))

    def set_lr(self, lr):
        for g in self.opt.param_groups:
            g["lr"] = lr * self.plan.lazy_ratio

    @property
    def lr(self):
        return self.opt.param_groups[0]["lr"]

    def reset_optimizer(self):
        self.opt.state.clear()

    def state_dict(self):
        return {"optim": self.opt.state_dict(), "scaler": {}}

    def load_state_dict(self, state):
        self.opt.load_state_dict(state["optim"])


@BACKENDS.register("toy_for_tests")
class ToyBackend:
    """One process, no wrapping, fp32: the least a backend must do."""

    @dataclass(kw_only=True)
    class Config:
        note: str = ""  # a backend section's own keys are validated like any other

    rank, world, is_main, device = 0, 1, True, torch.device("cpu")
    instances: list = []

    def __init__(self, cfg, train, seed):
        self.cfg, self.log = cfg, []
        process.setup(seed, 0, train.deterministic, train.threads)
        ToyBackend.instances.append(self)

    def prepare(self, nets, optim):
        return {n: ToyHandle(n, nets[n], plan, self.log) for n, plan in optim.items()}

    def all_mean(self, x):
        return x

    def reduce_mean(self, x):
        return x

    def any(self, flag):
        return bool(flag)

    def sync_buffers(self, net):
        pass

    def full_weights(self, net):
        return contextlib.nullcontext()

    def load_weights(self, net, tensors):
        net.load_state_dict(tensors)

    def gather_object(self, obj):
        return [obj]

    def barrier(self):
        pass

    def close(self):
        pass


def test_a_backend_defined_in_a_test_trains_two_steps(dcgan_cfg, tmp_path, one_thread):
    cfg = load_config(dcgan_cfg, tiny_overrides(tmp_path / "toy", **{"backend.name": "toy_for_tests",
                                                                     "backend.note": "hello",
                                                                     "train.total_kimg": 0.032}))
    tr = Trainer(cfg)
    backend = ToyBackend.instances[-1]
    assert tr.backend is backend and backend.cfg.note == "hello"
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in tr.nets.items()}
    result = tr.run()
    assert result["step"] == 2 and result["kimg"] == pytest.approx(0.032)
    steps = [e for e in backend.log if e[0] == "step"]
    assert steps == [("step", "D", ("D",)), ("step", "G", ("G",))] * 2
    assert [e for e in backend.log if e[0] == "micro_step"][:2] == [("micro_step", "D", True, ()),
                                                                   ("micro_step", "G", True, ())]
    for n, net in tr.nets.items():
        assert any(not torch.equal(a, p) for a, p in zip(before[n], net.parameters())), n
    w = read_weights(latest_ckpt(tmp_path / "toy") / "G.safetensors")
    assert torch.equal(w["net.0.weight"], tr.nets["G"].state_dict()["net.0.weight"])


def test_the_toy_backend_trains_exactly_what_accelerate_trains(dcgan_cfg, tmp_path, one_thread):
    """Same math (fp32, one process): the backend is only plumbing, so the weights agree bit for bit."""
    weights = {}
    for name in ("toy_for_tests", "accelerate"):
        cfg = load_config(dcgan_cfg, tiny_overrides(tmp_path / name, **{"backend.name": name,
                                                                         "train.total_kimg": 0.048}))
        Trainer(cfg).run()
        weights[name] = read_weights(latest_ckpt(tmp_path / name) / "D.safetensors")
    assert weights["toy_for_tests"].keys() == weights["accelerate"].keys()
    assert all(torch.equal(weights["toy_for_tests"][k], v) for k, v in weights["accelerate"].items())


def test_joint_phase_backpropagates_once_and_steps_every_net(tmp_path, one_thread):
    """InfoGAN's Qmain reaches G, D's trunk and Q: one backward led by G, one step of all three."""
    from conftest import ROOT
    cfg = load_config(ROOT / "configs" / "mnist_infogan.yaml",
                      tiny_overrides(tmp_path / "info", **{"backend.name": "toy_for_tests", "Q.width": 8,
                                                           "train.total_kimg": 0.016}))
    tr = Trainer(cfg)
    log = ToyBackend.instances[-1].log
    tr.train_step()
    assert ("backward", "G", ("D", "Q")) in log and ("step", "G", ("G", "D", "Q")) in log


def test_accelerate_handles_own_optimizer_scaler_and_state(dcgan_cfg, tmp_path, one_thread):
    cfg = load_config(dcgan_cfg, tiny_overrides(tmp_path / "acc", **{"optim.D.lr": 1e-3}))
    tr = Trainer(cfg)
    assert set(tr.handles) == {"G", "D"}
    h = tr.handles["D"]
    assert h.module is tr.nets["D"] and h.lr == pytest.approx(1e-3)
    tr.train_step()
    state = h.state_dict()
    assert set(state) == {"optim", "scaler"} and state["optim"]["state"]
    h.reset_optimizer()
    assert not h.opt.state
    h.load_state_dict(state)
    assert h.opt.state
    h.set_lr(5e-4)
    assert h.lr == pytest.approx(5e-4)


def test_an_unknown_backend_is_a_one_line_error(dcgan_cfg, tmp_path):
    from hifigan.errors import UserError
    with pytest.raises(UserError, match="backend.name: unknown backend 'acelerate'.*did you mean 'accelerate'"):
        load_config(dcgan_cfg, tiny_overrides(tmp_path / "x", **{"backend.name": "acelerate"}))
