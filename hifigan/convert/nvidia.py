"""NVIDIA's StyleGAN2 network snapshots (stylegan2-ada-pytorch `training/networks.py`, and stylegan3's
`training/networks_stylegan2.py`, which uses the same names) -> hifigan StyleGAN2 (Karras et al. 2020,
"Analyzing and Improving the Image Quality of StyleGAN", arXiv:1912.04958; "Training Generative
Adversarial Networks with Limited Data", arXiv:2006.06676).

A snapshot is a pickled dict {G, D, G_ema, augment_pipe, training_set_kwargs}; it is read with the
restricted unpickler (hifigan/convert/unpickle.py), so each network arrives as an inert record of
its class name, init kwargs and tensors. Hyperparameters come from the init kwargs; the tensors are
renamed by NAMES and checked against the network those kwargs build here.

Parameterization: both sides store every weight unscaled, N(0, 1) / lr_mul, and scale it at run time
by lr_mul / sqrt(fan_in); the reference's FullyConnectedLayer stores its bias as bias_init and ours
as bias_init / lr_mul, but both multiply the stored bias by lr_mul, so stored values carry over as
they are. The modulated convolution's 1 / sqrt(fan_in) sits on the style here and is cancelled by
demodulation there (toRGB, not demodulated, scales the style on both sides). The 2x up-sampling
conv0 kernel is stored in the reference's orientation (a transposed convolution of the unflipped
kernel). Noise: `noise_strength` -> `noise.strength`, `noise_const` -> `noise.noise_const`.
The conditional D's label mapping (z_dim 0) keeps the reference's `mapping.embed` / `mapping.fcN`.
"""
from __future__ import annotations

import math

from hifigan.convert import unpickle
from hifigan.convert.common import Converted, check_filter
from hifigan.convert.names import Renamer
from hifigan.errors import UserError, one_line

FORMAT = "stylegan2-ada-pytorch"

G_NAMES = Renamer([
    ("mapping.fc{i}.{p}", "mapping.layers.{i}.{p}"),
    ("mapping.embed.{p}", "mapping.embed.{p}"),
    ("mapping.w_avg", "mapping.w_avg"),
    ("synthesis.b4.const", "synthesis.blocks.b4.const.const"),
    ("synthesis.{b}.{conv}.affine.{p}", "synthesis.blocks.{b}.{conv}.conv.affine.{p}"),
    ("synthesis.{b}.{conv}.noise_strength", "synthesis.blocks.{b}.{conv}.noise.strength"),
    ("synthesis.{b}.{conv}.noise_const", "synthesis.blocks.{b}.{conv}.noise.noise_const"),
    ("synthesis.{b}.{conv}.{p}", "synthesis.blocks.{b}.{conv}.conv.{p}"),
])
D_NAMES = Renamer([
    ("b4.{layer}.{p}", "epilogue.{layer}.{p}"),
    ("mapping.fc{i}.{p}", "mapping.layers.{i}.{p}"),
    ("mapping.embed.{p}", "mapping.embed.{p}"),
    ("{b}.{layer}.{p}", "blocks.{b}.{layer}.{p}"),
])

# init kwargs that change nothing we store (memory layout, fused-op choice, frozen layers)
_IGNORED = {"fp16_channels_last", "fused_modconv_default", "channels_last", "freeze_layers"}


def read(path) -> dict:
    """The snapshot dict of records; damaged files and refused globals are one-line UserErrors."""
    try:
        with open(path, "rb") as f:
            data = unpickle.load(f)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    except Exception as e:  # only stand-ins run while unpickling: any other failure is a damaged file
        raise UserError(f"{path}: damaged or truncated pickle ({type(e).__name__}: {one_line(e, 120)}); "
                        f"{unpickle.ACCEPTED}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), unpickle.Persisted) for k in ("G", "G_ema")):
        raise UserError(f"{path}: not a network snapshot (no G / G_ema networks in it); {unpickle.ACCEPTED}")
    return data


def _option(where, what: str, kwargs: dict, key: str, default, allowed=None):
    value = kwargs.get(key, default)
    if value is None and default is not None:
        value = default
    if allowed is not None and value not in allowed:
        raise UserError(f"{where}: {what}.{key} = {value!r} is not supported (hifigan converts {allowed[0]!r} only)")
    return value


def _check_known(where, what: str, kwargs: dict, known) -> None:
    unknown = sorted(set(kwargs) - set(known) - _IGNORED)
    if unknown:
        raise UserError(f"{where}: {what} has setting {unknown[0]!r}={kwargs[unknown[0]]!r} that hifigan's StyleGAN2 "
                        f"does not have; this network cannot convert")


def _structure(where, rec: unpickle.Persisted, kind: str) -> None:
    """Refuse networks of another architecture by their submodules (StyleGAN3 synthesis, ...)."""
    if rec.class_name != ("Generator" if kind == "G" else "Discriminator"):
        raise UserError(f"{where}: {kind} is a {rec.class_name[:60]!r}, not a StyleGAN2 "
                        f"{'Generator' if kind == 'G' else 'Discriminator'}")
    if kind == "G":
        syn = rec.modules.get("synthesis")
        names = list(syn.modules) if syn is not None else []
        if syn is None or "mapping" not in rec.modules or not names or not all(n[0] == "b" and n[1:].isdigit()
                                                                                for n in names):
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise UserError(f"{where}: G's synthesis network has layers {shown or 'none'}, not StyleGAN2 blocks "
                            f"b4, b8, ... (a StyleGAN3 'T'/'R' config?); only StyleGAN2 networks convert")


def generator_config(where, rec: unpickle.Persisted) -> dict:
    kw = dict(rec.init_kwargs)
    mk = dict(kw.pop("mapping_kwargs", None) or {})
    syn = {**dict(kw.pop("synthesis_kwargs", None) or {}), **{k: kw.pop(k) for k in list(kw) if k not in
                                                               ("z_dim", "c_dim", "w_dim", "img_resolution",
                                                                "img_channels")}}
    _check_known(where, "G", syn, ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture",
                                   "resample_filter", "use_noise", "activation", "kernel_size"))
    _check_known(where, "G.mapping_kwargs", mk, ("num_layers", "lr_multiplier", "w_avg_beta", "embed_features",
                                                 "layer_features", "activation"))
    _option(where, "G", syn, "architecture", "skip", ("skip",))
    _option(where, "G", syn, "use_noise", True, (True,))
    _option(where, "G", syn, "activation", "lrelu", ("lrelu",))
    _option(where, "G", syn, "kernel_size", 3, (3,))
    _option(where, "G", syn, "resample_filter", [1, 3, 3, 1], ([1, 3, 3, 1], (1, 3, 3, 1)))
    w_dim = kw.get("w_dim")
    _option(where, "G.mapping_kwargs", mk, "embed_features", w_dim, (w_dim,))
    _option(where, "G.mapping_kwargs", mk, "layer_features", w_dim, (w_dim,))
    _option(where, "G.mapping_kwargs", mk, "activation", "lrelu", ("lrelu",))
    return dict(z_dim=kw.get("z_dim"), w_dim=w_dim, resolution=kw.get("img_resolution"),
                channels=kw.get("img_channels"), channel_base=syn.get("channel_base", 32768),
                channel_max=syn.get("channel_max", 512), mapping_layers=mk.get("num_layers", 8),
                mapping_lr_mul=mk.get("lr_multiplier", 0.01), num_classes=kw.get("c_dim", 0),
                w_avg_beta=mk.get("w_avg_beta", 0.995), num_fp16_res=syn.get("num_fp16_res", 0),
                conv_clamp=syn.get("conv_clamp"))


def discriminator_config(where, rec: unpickle.Persisted) -> dict:
    kw = dict(rec.init_kwargs)
    bk = dict(kw.pop("block_kwargs", None) or {})
    mk = dict(kw.pop("mapping_kwargs", None) or {})
    ek = dict(kw.pop("epilogue_kwargs", None) or {})
    _check_known(where, "D", kw, ("c_dim", "img_resolution", "img_channels", "architecture", "channel_base",
                                  "channel_max", "num_fp16_res", "conv_clamp", "cmap_dim"))
    _check_known(where, "D.block_kwargs", bk, ("activation", "resample_filter"))
    _check_known(where, "D.mapping_kwargs", mk, ("num_layers", "lr_multiplier", "embed_features", "layer_features",
                                                 "activation"))
    _check_known(where, "D.epilogue_kwargs", ek, ("mbstd_group_size", "mbstd_num_channels", "activation"))
    _option(where, "D", kw, "architecture", "resnet", ("resnet",))
    _option(where, "D.block_kwargs", bk, "activation", "lrelu", ("lrelu",))
    _option(where, "D.block_kwargs", bk, "resample_filter", [1, 3, 3, 1], ([1, 3, 3, 1], (1, 3, 3, 1)))
    _option(where, "D.epilogue_kwargs", ek, "activation", "lrelu", ("lrelu",))
    base, cmax = kw.get("channel_base", 32768), kw.get("channel_max", 512)
    c4 = min(base // 4, cmax) if isinstance(base, int) and isinstance(cmax, int) else None
    _option(where, "D", kw, "cmap_dim", c4, (c4,))
    _option(where, "D.mapping_kwargs", mk, "embed_features", c4, (c4,))
    _option(where, "D.mapping_kwargs", mk, "layer_features", c4, (c4,))
    _option(where, "D.mapping_kwargs", mk, "activation", "lrelu", ("lrelu",))
    group = ek.get("mbstd_group_size", 4)
    if group is None:
        raise UserError(f"{where}: D.epilogue_kwargs.mbstd_group_size = None (the whole batch) is not supported; "
                        f"hifigan's minibatch stddev needs a group size")
    cfg = dict(resolution=kw.get("img_resolution"), channels=kw.get("img_channels"), channel_base=base,
               channel_max=cmax, num_classes=kw.get("c_dim", 0), mbstd_group=group,
               mbstd_channels=ek.get("mbstd_num_channels", 1), num_fp16_res=kw.get("num_fp16_res", 0),
               conv_clamp=kw.get("conv_clamp"))
    if cfg["num_classes"]:
        cfg.update(mapping_layers=mk.get("num_layers", 8), mapping_lr_mul=mk.get("lr_multiplier", 0.01))
    return cfg


def rename(where, rec: unpickle.Persisted, names: Renamer, what: str) -> dict:
    """The record's tensors under hifigan names; resample filters checked and dropped."""
    out = {}
    for name, t in rec.tensors().items():
        if name.endswith("resample_filter"):
            check_filter(t, where, f"{what}.{name}")
            continue
        ours = names.ours(name)
        if ours is None:
            raise UserError(f"{where}: {what} has tensor {name[:80]} that no StyleGAN2 layer of hifigan holds; "
                            f"only StyleGAN2 networks convert")
        out[ours] = t.detach().float() if t.is_floating_point() else t.detach()
    return out


def convert(path) -> Converted:
    data = read(path)
    where = str(path)
    nets = {k: data.get(k) for k in ("G", "G_ema", "D")}
    for k, rec in nets.items():
        if rec is not None and not isinstance(rec, unpickle.Persisted):
            raise UserError(f"{where}: {k} is not a network; {unpickle.ACCEPTED}")
    for k in ("G", "G_ema"):
        _structure(where, nets[k], "G")
    g_cfg = generator_config(where, nets["G_ema"])
    if generator_config(where, nets["G"]) != g_cfg:
        raise UserError(f"{where}: G and G_ema were built with different settings; the snapshot is inconsistent")
    d_cfg = None
    tensors = {k: rename(where, nets[k], G_NAMES, k) for k in ("G", "G_ema")}
    if nets["D"] is not None:
        _structure(where, nets["D"], "D")
        d_cfg = discriminator_config(where, nets["D"])
        tensors["D"] = rename(where, nets["D"], D_NAMES, "D")
    notes = [] if d_cfg is not None else ["the snapshot holds no D: the converted checkpoint can generate but not "
                                          "resume training"]
    res = g_cfg.get("resolution")
    if isinstance(res, int) and res > 0 and not math.log2(res).is_integer():
        raise UserError(f"{where}: img_resolution {res} is not a power of two")
    return Converted(source=where, fmt=FORMAT, G=g_cfg, D=d_cfg, tensors=tensors, notes=notes)
