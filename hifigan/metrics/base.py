"""What every metric shares: its result type, building metrics by registry name, evaluating them,
and printing their figures (launch/metrics.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from hifigan.checkpoint import load_generator, resolve
from hifigan.registry import METRICS


@dataclass
class MetricResult:
    scalars: dict[str, float]                      # logged as Metrics/<key>, e.g. Metrics/mnist_fd
    details: dict = field(default_factory=dict)    # printed only: histograms, reference figures, paths


def build_metrics(names, samples: int | None = None, G=None) -> list:
    """Metrics by registry name; `samples` overrides each one's sample count; `G` is checked early."""
    out = []
    for name in names:
        cls = METRICS.get(name, "metrics: ")
        has_samples = any(f.name == "samples" for f in fields(cls.Config))
        metric = METRICS.build(name, {"samples": samples} if samples is not None and has_samples else {},
                               where=f"metrics.{name}")
        if G is not None and hasattr(metric, "check"):
            metric.check(G)
        out.append(metric)
    return out


def evaluate(metrics, G, device=None) -> MetricResult:
    """All metrics' results merged into one."""
    scalars, details = {}, {}
    for metric in metrics:
        r = metric(G, device)
        scalars.update(r.scalars)
        details.update(r.details)
    return MetricResult(scalars, details)


def metrics_from_checkpoint(path, names=("mnist_fd",), samples: int | None = None,
                            device: str | None = None) -> dict:
    """launch/metrics.py: the figures of a checkpoint's generator (G_ema if present, else G)."""
    G = load_generator(path, device)
    result = evaluate(build_metrics(names, samples, G), G)
    return {"checkpoint": str(resolve(path)), **result.scalars, **result.details}


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
