"""What every metric shares: its result type, building metrics by registry name, evaluating them,
and printing their figures (launch/metrics.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from hifigan.checkpoint import load_generator, resolve
from hifigan.errors import UserError
from hifigan.registry import METRICS


@dataclass
class MetricResult:
    scalars: dict[str, float]                      # logged as Metrics/<key>, e.g. Metrics/mnist_fd
    details: dict = field(default_factory=dict)    # printed only: histograms, reference figures, paths


def build_metrics(names, samples: int | None = None, G=None, options: dict | None = None,
                  protocol_samples: bool = False) -> list:
    """Metrics by registry name with their `options` ({name: {key: value}}); `samples` overrides the
    sample count of the smoke metrics (of the protocol metrics too with `protocol_samples`, as
    launch/metrics.py --samples does); `G` is checked early."""
    out = []
    if names and G is not None:
        from hifigan.sampling.hooks import arch_name, hooks_for
        if hooks_for(G).labelmap:  # every metric here samples G from seeds and class ids
            raise UserError(f"metrics: {arch_name(G)!r} synthesizes from label maps, which these metrics do not "
                            f"draw; remove metrics (scripts measure its outputs against the maps)")
    for name in names:
        cls = METRICS.get(name, "metrics: ")
        known = {f.name for f in fields(cls.Config)}
        mapping = dict((options or {}).get(name) or {})
        if samples is not None and "samples" in known and "samples" not in mapping and (
                protocol_samples or not getattr(cls, "fixed_protocol", False)):
            mapping["samples"] = samples
        metric = METRICS.build(name, mapping, where=f"metric_options.{name}" if mapping else f"metrics.{name}")
        if G is not None and hasattr(metric, "check"):
            metric.check(G)
        out.append(metric)
    return out


def evaluate(metrics, G, device=None, ctx=None) -> MetricResult:
    """All metrics' results merged into one; `ctx` (features.EvalContext: the recipe's data and the
    ranks) reaches the metrics that need it."""
    scalars, details = {}, {}
    for metric in metrics:
        r = metric(G, device, ctx) if getattr(metric, "needs_context", False) else metric(G, device)
        scalars.update(r.scalars)
        details.update(r.details)
    return MetricResult(scalars, details)


def metrics_from_checkpoint(path, names=("mnist_fd",), samples: int | None = None,
                            device: str | None = None, options: dict | None = None) -> dict:
    """launch/metrics.py: the figures of a checkpoint's generator (G_ema if present, else G); the
    protocol metrics compare with the data of the recipe stored in the checkpoint, with the recipe's
    metric_options under `options`."""
    from hifigan.metrics.features import EvalContext
    G = load_generator(path, device)
    run = run_config(resolve(path))
    merged = {k: dict(v) for k, v in (run.metric_options if run else {}).items()}
    for name, opts in (options or {}).items():
        merged.setdefault(name, {}).update(opts)
    metrics = build_metrics(names, samples, G, merged, protocol_samples=True)
    result = evaluate(metrics, G, ctx=EvalContext(data=run.data if run else None))
    return {"checkpoint": str(resolve(path)), **result.scalars, **result.details}


def run_config(ckpt):
    """The recipe a checkpoint was trained with (stored in its generator file), or None."""
    from pathlib import Path

    from hifigan import config as config_mod
    from hifigan.checkpoint import read_net
    ckpt = Path(ckpt)
    files = [ckpt] if ckpt.is_file() else [ckpt / "G_ema.safetensors", ckpt / "G.safetensors"]
    for f in files:
        if f.is_file():
            text = read_net(f)[0].get("config")
            if text:
                try:
                    return config_mod.load_config(None, mapping=config_mod.loads(text))
                except Exception:  # noqa: BLE001  (a recipe of an older hifigan: no real-data metrics)
                    return None
    return None


def format_lines(figures: dict, as_json: bool = False) -> str:
    """One `name value` line per figure (lists space-separated), or one JSON object."""
    if as_json:
        return json.dumps(figures)

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, (list, tuple)):
            return " ".join(fmt(x) for x in v)
        return str(v)
    return "\n".join(f"{k} {fmt(v)}" for k, v in figures.items())
