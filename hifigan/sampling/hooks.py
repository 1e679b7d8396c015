"""Per-family sampling hooks: what sampling may do with a generator beyond img = G(z, c).

Sampling never guesses a family from a generator's attributes. The registry name of its class
(`G.registry_name`, set by `GENERATORS.register`) selects an entry of `HOOKS`; an architecture without
one is sampled as img = G(z, c) and nothing else.

- Style-based generators (StyleGAN: Karras et al. 2019, "A Style-Based Generator Architecture for
  Generative Adversarial Networks", arXiv:1812.04948) split G into mapping (z, c -> ws [N, num_ws,
  w_dim]) and synthesis (ws -> img). Their hooks add the truncation trick (section 3.1: ws = w_avg +
  psi * (ws - w_avg) on the styles [0, cutoff)), noise modes, style mixing and walks in w.
- InfoGAN-capable generators (Chen et al. 2016, arXiv:1606.03657) read categorical and continuous
  codes from the end of z; their hooks add latent-code traversals.
- Label-map generators (SPADE: Park et al. 2019, arXiv:1903.07291) take a semantic map as c; they are
  sampled from label maps (sampling/labelmaps.py), never from seeds and class ids alone.
- BigGAN-style generators (Brock et al. 2019, arXiv:1809.11096, section 3.1) take the truncation
  trick in z: `--trunc t` redraws every entry of z with |z| > t until none is left (seeds.py).
- Pyramid generators (LAPGAN: Denton et al. 2015, arXiv:1506.05751) sample coarse to fine; their
  hooks give every level's image (`--levels`, levels.py).

A new family registers its hooks once: `register_hooks("mygan", SamplingHooks(...))`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from hifigan.errors import UserError

NOISE_MODES = ("const", "random", "none")  # per-layer noise of style-based generators


@dataclass(frozen=True)
class SamplingHooks:
    """How sampling reaches one family's parts; a capability is there when its hooks are."""
    mapping: Callable | None = None      # (G, z, c, psi, cutoff) -> ws [N, num_ws, w_dim], truncated
    synthesis: Callable | None = None    # (G, ws, noise_mode) -> img [N, C, H, W] in [-1, 1]
    num_ws: Callable | None = None       # G -> its number of styles (the range of cutoff and mixed styles)
    codes: Callable | None = None        # G -> (categories, continuous codes) of its InfoGAN codes
    with_codes: Callable | None = None   # (G, z, c, category [N] | None, values [N, k] | None) -> img
    z_truncation: bool = False           # --trunc t means z resampled until every |z| <= t (BigGAN)
    class_embedding: Callable | None = None  # G -> its shared class embedding (nn.Embedding), for walks between classes
    labelmap: bool = False               # G(z, c) synthesizes from a label map c (SPADE): sampled from maps, not seeds
    levels: Callable | None = None       # (G, z, c) -> every pyramid level's image, coarsest first (LAPGAN)

    def __post_init__(self):
        style = [self.mapping, self.synthesis, self.num_ws]
        if any(h is None for h in style) and any(h is not None for h in style):
            raise TypeError("style-based hooks need mapping, synthesis and num_ws together")
        if (self.codes is None) != (self.with_codes is None):
            raise TypeError("InfoGAN hooks need codes and with_codes together")

    @property
    def style_based(self) -> bool:
        return self.mapping is not None


PLAIN = SamplingHooks()

STYLE_BASED = SamplingHooks(
    mapping=lambda G, z, c, psi, cutoff: G.mapping(z, c, psi=psi, cutoff=cutoff),
    synthesis=lambda G, ws, noise_mode: G.synthesis(ws, noise_mode=noise_mode),
    num_ws=lambda G: G.num_ws,
)

INFOGAN_CODES = SamplingHooks(
    codes=lambda G: (G.code_cat, G.code_cont),
    with_codes=lambda G, z, c, category, values: G(z, c, codes=(category, values)),
)

Z_TRUNCATION = SamplingHooks(z_truncation=True)
BIGGAN = SamplingHooks(z_truncation=True, class_embedding=lambda G: G.shared)
LABELMAP = SamplingHooks(labelmap=True)
LAPGAN = SamplingHooks(levels=lambda G, z, c: G.levels(z, c))

# generator registry name -> hooks; the architectures of hifigan.models that have any
HOOKS: dict[str, SamplingHooks] = {
    "biggan": BIGGAN,
    "biggan_deep": BIGGAN,
    "lapgan": LAPGAN,
    "sagan": Z_TRUNCATION,
    "spade": LABELMAP,
    "stylegan1": STYLE_BASED,
    "stylegan2": STYLE_BASED,
    "dcgan": INFOGAN_CODES,
    "mlp": INFOGAN_CODES,
}


def register_hooks(arch: str, hooks: SamplingHooks) -> SamplingHooks:
    """Give the generators registered as `arch` these hooks (once per name)."""
    if arch in HOOKS:
        raise ValueError(f"sampling hooks for {arch!r} registered twice")
    HOOKS[arch] = hooks
    return hooks


def arch_name(G: nn.Module) -> str:
    """G's registry name (its class name for an unregistered module); error messages name it."""
    return getattr(G, "registry_name", type(G).__name__)


def hooks_for(G: nn.Module) -> SamplingHooks:
    return HOOKS.get(getattr(G, "registry_name", None), PLAIN)


def require_style(G: nn.Module, option: str) -> SamplingHooks:
    """G's hooks if it is style-based, else a UserError naming the command-line `option`."""
    hooks = hooks_for(G)
    if not hooks.style_based:
        raise UserError(f"{option}: needs a style-based generator (StyleGAN), but this one is "
                        f"{arch_name(G)!r} (no mapping network); drop the option")
    return hooks


def check_style_options(G: nn.Module, psi: float = 1.0, cutoff: int | None = None,
                        noise_mode: str = "const") -> SamplingHooks:
    """Truncation and noise options are for style-based generators; check them before any work."""
    if noise_mode not in NOISE_MODES:
        raise UserError(f"--noise-mode {noise_mode!r}: use one of {', '.join(NOISE_MODES)}")
    hooks = hooks_for(G)
    if hooks.z_truncation and psi != 1 and not (0 < psi < float("inf")):
        raise UserError(f"--trunc {psi:g}: for this generator the threshold on |z|; give a positive number "
                        f"(the BigGAN paper uses 0.04 .. 2)")
    if not hooks.style_based:
        given = [f for f, on in [(f"--trunc {psi:g}", psi != 1 and not hooks.z_truncation),
                                 (f"--trunc-cutoff {cutoff}", cutoff is not None),
                                 (f"--noise-mode {noise_mode}", noise_mode != "const")] if on]
        if given:
            require_style(G, given[0])
        return hooks
    num_ws = hooks.num_ws(G)
    if cutoff is not None and not 0 <= cutoff <= num_ws:
        raise UserError(f"--trunc-cutoff {cutoff}: this generator has {num_ws} styles; give 0..{num_ws}")
    return hooks
