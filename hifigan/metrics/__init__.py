"""Evaluation metrics registered by name (`metrics: [mnist_fd]` in a recipe; launch/metrics.py).

A metric is a registered class with a nested Config; `metric(G, device=None)` samples G (in eval
mode, without touching the global RNG) and returns a `MetricResult`: `scalars` are the figures the
trainer logs to TensorBoard as Metrics/<name>, `details` are the reference figures and histograms
launch/metrics.py prints beside them. `metric.check(G)` fails early for a generator it cannot judge.
Importing this package registers every metric.
"""
from hifigan.metrics import mnist_fd  # noqa: F401  (registers "mnist_fd")
from hifigan.metrics import protocols  # noqa: F401  (registers fid50k_full, kid50k_full, pr50k3_full, ppl2_wend, is50k)
from hifigan.metrics.base import MetricResult, build_metrics, evaluate, format_lines, metrics_from_checkpoint

__all__ = ["protocols", "MetricResult", "build_metrics", "evaluate", "metrics_from_checkpoint", "format_lines", "mnist_fd"]
