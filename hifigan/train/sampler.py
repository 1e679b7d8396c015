"""Randomness that is a property of the global batch, not of how it is split.

Every rank holds the same generator (seeded from the run seed) and, for each phase repeat, draws
the latents of the whole global batch, then keeps its own chunk. Two ranks x batch B therefore
see exactly the z that one rank x batch 2B sees, and the split into ranks and accumulation steps
never changes what is trained. The draws are a few KB per step; the generator state is one
tensor in the checkpoint.
"""
from __future__ import annotations

import torch


class SharedRandom:
    def __init__(self, seed: int, global_batch: int, chunk_size: int, device):
        self.gen = torch.Generator().manual_seed(int(seed) + 0x5EED)
        self.global_batch, self.chunk_size, self.device = global_batch, chunk_size, device
        self._draws: list[tuple] = []

    def begin(self) -> None:
        """Start a phase repeat: the next views draw fresh global tensors."""
        self._draws = []

    def view(self, chunk: int) -> "RandomView":
        return RandomView(self, chunk)

    def _draw(self, k: int, kind: str, dims: tuple) -> torch.Tensor:
        if k == len(self._draws):
            shape = (self.global_batch, *dims)
            if kind == "randn":
                t = torch.randn(shape, generator=self.gen)
            elif kind == "rand":
                t = torch.rand(shape, generator=self.gen)
            else:
                t = torch.randint(dims[0], (self.global_batch,), generator=self.gen)
            self._draws.append((kind, dims, t))
        drawn_kind, drawn_dims, t = self._draws[k]
        if (drawn_kind, drawn_dims) != (kind, dims):
            raise RuntimeError("an objective must make the same random draws in every micro-step")
        return t

    def state(self) -> torch.Tensor:
        return self.gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)


class RandomView:
    """This rank's chunk `chunk` of each global draw (the `Randomness` an objective sees)."""

    def __init__(self, parent: SharedRandom, chunk: int):
        self.parent, self.chunk, self.count = parent, chunk, 0
        self.size = parent.chunk_size  # samples in this rank's chunk
        self.device = parent.device    # where the draws land

    def _take(self, kind, dims):
        t = self.parent._draw(self.count, kind, dims)
        self.count += 1
        n = self.parent.chunk_size
        return t[self.chunk * n:(self.chunk + 1) * n].to(self.parent.device)

    def randn(self, *dims: int) -> torch.Tensor:
        return self._take("randn", dims)

    def rand(self, *dims: int) -> torch.Tensor:
        return self._take("rand", dims)

    def randint(self, high: int) -> torch.Tensor:
        return self._take("randint", (high,))

    def shared_rand(self, k: int) -> torch.Tensor:
        """[k] uniform in [0, 1) on the CPU, the same for every rank and micro-step of this phase repeat
        (row 0 of a global draw): a decision made once per global batch."""
        t = self.parent._draw(self.count, "rand", (k,))
        self.count += 1
        return t[0]
