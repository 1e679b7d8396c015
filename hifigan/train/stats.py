"""Training statistics: accumulated locally every step, averaged over ranks only when logged."""
from __future__ import annotations

import torch


class Collector:
    def __init__(self):
        self._sum: dict[str, torch.Tensor] = {}
        self._count: dict[str, int] = {}

    def add(self, name: str, value) -> None:
        """Accumulate without a device sync (tensors stay where they are until `means`)."""
        v = value.detach().float().mean() if torch.is_tensor(value) else torch.tensor(float(value))
        self._sum[name] = self._sum[name] + v if name in self._sum else v
        self._count[name] = self._count.get(name, 0) + 1

    def means(self, reduce_mean=None) -> dict[str, float]:
        """Local means (or means over ranks through `reduce_mean`), then reset. Ranks log the same names."""
        names = sorted(self._sum)
        local = torch.tensor([float(self._sum[n]) / self._count[n] for n in names], dtype=torch.float64)
        if reduce_mean is not None and names:
            local = reduce_mean(local)
        self._sum, self._count = {}, {}
        return dict(zip(names, local.tolist()))
