"""Seeds -> latents and labels: seed s fixes one z (drawn alone from `torch.Generator().manual_seed(s)`)
and, for a conditional generator, the class s % num_classes, so an image never depends on which other
seeds share its batch.

`rng="numpy"` draws z as NVIDIA's StyleGAN2-ADA / StyleGAN3 generate.py does,
`np.random.RandomState(s).randn(1, z_dim)` (float64, then float32), so a converted network's seed s
gives the image their scripts give (with the same truncation and noise_mode); seeds below 2^32 only."""
from __future__ import annotations

import numpy as np
import torch

from hifigan.errors import UserError
from hifigan.schema import short


MAX_VALUES = 1_000_000  # seeds (or styles) one command may list
MAX_SEED = 2 ** 63 - 1   # torch.Generator().manual_seed's largest
SEED_RNGS = ("torch", "numpy")  # how a seed becomes z: ours, or NVIDIA's generate.py (numpy RandomState)
MAX_NUMPY_SEED = 2 ** 32 - 1    # np.random.RandomState's largest


def parse_ranges(text: str, flag: str) -> list[int]:
    """'0-63' or '1,5,9-11' -> list of ints; errors name the command-line `flag`."""
    values = []
    shown = short(text, 60)
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            lo, hi = int(lo), int(hi) if hi else int(lo)
            if lo < 0 or hi < lo or hi > MAX_SEED:
                raise ValueError
            if len(values) + hi - lo + 1 > MAX_VALUES:
                raise UserError(f"{flag} {shown}: more than {MAX_VALUES:,} values; give fewer (e.g. 0-63)")
            values.extend(range(lo, hi + 1))
    except ValueError:
        raise UserError(f"{flag} {shown}: expected non-negative numbers (below 2^63) and ranges like 0-63 or "
                        f"1,5,9-11") from None
    if not values:
        raise UserError(f"{flag} {shown}: no values given")
    return values


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """'0-63' or '1,5,9-11' -> list of ints."""
    return parse_ranges(text, flag)


def check_seed_rng(seeds, rng: str) -> None:
    """--seed-rng is known and, for numpy, every seed fits RandomState (one-line UserError otherwise)."""
    if rng not in SEED_RNGS:
        raise UserError(f"--seed-rng {short(rng)}: choose from {', '.join(SEED_RNGS)}")
    if rng == "numpy":
        big = next((s for s in seeds if not 0 <= int(s) <= MAX_NUMPY_SEED), None)
        if big is not None:
            raise UserError(f"--seed-rng numpy: seed {big} is out of numpy's range 0..{MAX_NUMPY_SEED}; give smaller seeds")


def seed_latents(seeds, z_dim: int, rng: str = "torch", threshold: float | None = None) -> torch.Tensor:
    """z [len(seeds), z_dim]: row i is drawn alone from a generator seeded with seeds[i] (torch.Generator,
    or with rng="numpy" np.random.RandomState as NVIDIA's generate.py draws it). With `threshold`
    (BigGAN's truncation trick), the entries with |z| > threshold are redrawn from the same generator
    until none is left: entries already inside keep their values, and a seed's z stays its own."""
    check_seed_rng(seeds, rng)
    rows = []
    for s in seeds:
        if rng == "numpy":
            r = np.random.RandomState(int(s))
            draw = lambda k, r=r: torch.from_numpy(r.randn(1, k)[0]).float()  # noqa: E731
        else:
            g = torch.Generator().manual_seed(int(s))
            draw = lambda k, g=g: torch.randn(k, generator=g)  # noqa: E731
        z = draw(z_dim)
        if threshold is not None:
            z = resample_outside(z, threshold, draw)
        rows.append(z)
    return torch.stack(rows)


def resample_outside(z: torch.Tensor, threshold: float, draw) -> torch.Tensor:
    """z with every entry |z| > threshold replaced by fresh draws (draw(k) -> [k]) until none is left."""
    if not threshold > 0:
        raise UserError(f"--trunc {threshold}: the threshold on |z| must be positive")
    z = z.clone()
    for _ in range(100_000):  # P(|z| > t) < 1 for t > 0: a handful of rounds; the cap guards t ~ 0
        out = z.abs() > threshold
        if not out.any():
            return z
        z[out] = draw(int(out.sum())).to(z.dtype)
    raise UserError(f"--trunc {threshold}: too small to draw z inside it; use a threshold of at least 0.01")


def seed_labels(seeds, num_classes: int, cls: int | None = None) -> torch.Tensor | None:
    """Class labels for conditional generators: `cls` for all, else seed % num_classes (rows = classes)."""
    if not num_classes:
        if cls is not None:
            raise UserError("--class was given but this generator is unconditional (num_classes = 0)")
        return None
    if cls is not None and not 0 <= cls < num_classes:
        raise UserError(f"--class {cls}: this generator knows classes 0..{num_classes - 1}")
    return torch.tensor([cls if cls is not None else int(s) % num_classes for s in seeds])
