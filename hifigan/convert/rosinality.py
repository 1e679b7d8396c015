"""rosinality/stylegan2-pytorch checkpoints (`model.py`) -> hifigan StyleGAN2 (Karras et al. 2020,
"Analyzing and Improving the Image Quality of StyleGAN", arXiv:1912.04958).

A checkpoint is a torch.save'd dict {g, d, g_ema, g_optim, d_optim, args, ...} (training) or
{g_ema, latent_avg} (convert_weight.py); it is read with torch.load(weights_only=True) (its `args`,
an argparse.Namespace, is the one class allowed besides tensors). Sizes come from the tensor shapes:
resolution = 2^(len(to_rgbs) + 2), z_dim = w_dim = style_dim, mapping layers = the EqualLinears of
`style`, channels per resolution from the conv weights (channel_multiplier 1 and 2 are
channel_base 16384 and 32768 with channel_max 512; other layouts are refused). Their mapping runs
at lr_mul 0.01 (`lr_mlp`, never changed by their train.py).

Correspondence (theirs -> ours), values unchanged unless said:
  style.{k} (k = 1..n_mlp; style.0 is PixelNorm)  -> mapping.layers.{k-1}   (EqualLinear: weight randn / lr_mul,
      bias stored as bias_init, both scaled by lr_mul at run time: ours stores bias_init / lr_mul but also
      multiplies by lr_mul, so stored values carry over; fused_lrelu = lrelu(x + b) * sqrt(2) = our lrelu)
  input.input [1, C, 4, 4]                         -> synthesis.blocks.b4.const.const [C, 4, 4]
  conv1 / convs.{2j} / convs.{2j+1}                -> b4.conv1 / b{2^(j+3)}.conv0 / b{2^(j+3)}.conv1:
      .conv.weight [1, O, I, k, k] -> .conv.weight [O, I, k, k]; .conv.modulation -> .conv.affine;
      .activate.bias -> .conv.bias; .noise.weight [1] -> .noise.strength []. Their ModulatedConv2d folds
      `scale` = 1 / sqrt(fan_in) into the weight, ours into the style: the same product. Their up-sampling
      conv is conv_transpose2d of the unflipped kernel, then the [1, 3, 3, 1] * 4 blur with pads (1, 1):
      the reference orientation ours stores.
  to_rgb1 / to_rgbs.{j}                            -> b4.torgb / b{2^(j+3)}.torgb: .conv.weight squeezed,
      .conv.modulation -> .conv.affine, .bias [1, 3, 1, 1] -> .conv.bias [3] (not demodulated, scale on the
      style on both sides)
  noises.noise_{i} [1, 1, r, r]                    -> noise_const [r, r] of layer i (0: b4.conv1, then conv0,
      conv1 of each block upwards)
  latent_avg (when present)                        -> mapping.w_avg; else the mean w of 10,000 z from a
      generator seeded 0 (their generate.py uses mean_latent(4096) at run time)
  D: convs.0 (ConvLayer 1x1: .0 weight, .1 FusedLeakyReLU bias) -> blocks.b{R}.fromrgb;
     convs.{k} ResBlock: conv1 -> conv0, conv2 (.0 Blur, .1 conv, .2 bias) -> conv1, skip (.0 Blur, .1 conv)
       -> skip; (out + skip) / sqrt(2) = our two branches each scaled by sqrt(1/2)
     final_conv -> epilogue.conv; final_linear.0 / .1 -> epilogue.fc / epilogue.out;
     stddev_group 4, stddev_feat 1 -> mbstd_group 4, mbstd_channels 1 (the same grouping: sample n in
     group n % (N / G)). Blur and up-sample kernels are buffers there; they must be the [1, 3, 3, 1] filter.
Images: 3 channels (their ToRGB is fixed to RGB); unconditional only.
"""
from __future__ import annotations

import argparse
import re

import torch

from hifigan.convert.common import Converted, build, check_filter
from hifigan.errors import UserError, one_line
from hifigan.models.progan import channels_at

FORMAT = "rosinality"
LR_MLP = 0.01
W_AVG_SAMPLES = 10_000


def read(path) -> dict:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError / UnpicklingError / zip errors for damaged files
        msg = one_line(e, 160)
        if "Unsupported global" in msg or "weights_only" in msg.lower():
            raise UserError(f"{path}: refused: the checkpoint holds Python objects other than tensors and "
                            f"plain data ({msg[:100]}); only rosinality/stylegan2-pytorch checkpoints are accepted") from None
        raise UserError(f"{path}: damaged or truncated torch checkpoint ({type(e).__name__}: {msg[:120]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("g_ema"), dict):
        raise UserError(f"{path}: not a rosinality/stylegan2-pytorch checkpoint (no 'g_ema' state dict)")
    return ckpt


def _t(sd: dict, key: str, where: str, what: str) -> torch.Tensor:
    t = sd.get(key)
    if not isinstance(t, torch.Tensor):
        raise UserError(f"{where}: {what} has no tensor {key}; not a rosinality StyleGAN2 network")
    return t.detach().float()


def _layout(channels: dict, where: str, what: str) -> tuple[int, int]:
    """(channel_base, channel_max) reproducing `channels` {res: C} with min(base // res, max)."""
    cmax = channels[4]
    big = [r for r in channels if r >= 64]
    base = channels[min(big)] * min(big) if big else cmax * 32
    if any(channels_at(r, base, cmax) != c for r, c in channels.items()):
        raise UserError(f"{where}: {what}'s channels per resolution {dict(sorted(channels.items()))} are not "
                        f"min(base / res, max) for any base (channel_multiplier other than 1 or 2?); cannot convert")
    return base, cmax


def _styled(sd, src: str, dst: str, where: str, what: str) -> dict:
    return {f"{dst}.conv.weight": _t(sd, f"{src}.conv.weight", where, what).squeeze(0),
            f"{dst}.conv.affine.weight": _t(sd, f"{src}.conv.modulation.weight", where, what),
            f"{dst}.conv.affine.bias": _t(sd, f"{src}.conv.modulation.bias", where, what),
            f"{dst}.conv.bias": _t(sd, f"{src}.activate.bias", where, what),
            f"{dst}.noise.strength": _t(sd, f"{src}.noise.weight", where, what).reshape(())}


def _torgb(sd, src: str, dst: str, where: str, what: str) -> dict:
    return {f"{dst}.conv.weight": _t(sd, f"{src}.conv.weight", where, what).squeeze(0),
            f"{dst}.conv.affine.weight": _t(sd, f"{src}.conv.modulation.weight", where, what),
            f"{dst}.conv.affine.bias": _t(sd, f"{src}.conv.modulation.bias", where, what),
            f"{dst}.conv.bias": _t(sd, f"{src}.bias", where, what).reshape(-1)}


def _kernels(sd: dict, where: str, what: str) -> None:
    for k, v in sd.items():
        if k.endswith(".kernel") and isinstance(v, torch.Tensor):
            check_filter(v, where, f"{what}.{k}")


def generator(sd: dict, where: str, what: str, latent_avg=None) -> tuple[dict, dict]:
    """(our G config, our G tensors) of one rosinality Generator state dict."""
    _kernels(sd, where, what)
    n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
    n_rgb = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    if n_mlp == 0 or n_rgb == 0:
        raise UserError(f"{where}: {what} is not a rosinality StyleGAN2 generator (no style.* mapping or to_rgbs.* layers)")
    res = 2 ** (n_rgb + 2)
    style_dim = _t(sd, "style.1.weight", where, what).shape[1]
    out = {f"mapping.layers.{k - 1}.{p}": _t(sd, f"style.{k}.{p}", where, what)
           for k in range(1, n_mlp + 1) for p in ("weight", "bias")}
    out["synthesis.blocks.b4.const.const"] = _t(sd, "input.input", where, what).squeeze(0)
    out.update(_styled(sd, "conv1", "synthesis.blocks.b4.conv1", where, what))
    out.update(_torgb(sd, "to_rgb1", "synthesis.blocks.b4.torgb", where, what))
    layers = ["synthesis.blocks.b4.conv1"]
    for j in range(n_rgb):
        b = f"synthesis.blocks.b{2 ** (j + 3)}"
        out.update(_styled(sd, f"convs.{2 * j}", f"{b}.conv0", where, what))
        out.update(_styled(sd, f"convs.{2 * j + 1}", f"{b}.conv1", where, what))
        out.update(_torgb(sd, f"to_rgbs.{j}", f"{b}.torgb", where, what))
        layers += [f"{b}.conv0", f"{b}.conv1"]
    for i, layer in enumerate(layers):
        n = _t(sd, f"noises.noise_{i}", where, what)
        out[f"{layer}.noise.noise_const"] = n.reshape(n.shape[-2:])
    channels = {4: out["synthesis.blocks.b4.const.const"].shape[0]}
    channels.update({2 ** (j + 3): out[f"synthesis.blocks.b{2 ** (j + 3)}.conv1.conv.weight"].shape[0]
                     for j in range(n_rgb)})
    base, cmax = _layout(channels, where, what)
    cfg = dict(z_dim=style_dim, w_dim=style_dim, resolution=res, channels=3, channel_base=base, channel_max=cmax,
               mapping_layers=n_mlp, mapping_lr_mul=LR_MLP)
    out["mapping.w_avg"] = _w_avg(cfg, out, where, latent_avg)
    return cfg, out


def _w_avg(cfg: dict, tensors: dict, where: str, latent_avg) -> torch.Tensor:
    if isinstance(latent_avg, torch.Tensor) and latent_avg.numel() == cfg["w_dim"]:
        return latent_avg.detach().float().reshape(-1)
    G = build("G", cfg, where)  # the mapping alone decides w; the synthesis weights load with it
    G.load_state_dict({**tensors, "mapping.w_avg": torch.zeros(cfg["w_dim"])})
    z = torch.randn(W_AVG_SAMPLES, cfg["z_dim"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return G.eval().mapping(z, None)[:, 0].mean(0)


def discriminator(sd: dict, where: str, what: str = "d") -> tuple[dict, dict]:
    _kernels(sd, where, what)
    blocks = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"convs\.(\d+)\.conv1\.0\.weight", k)))
    if not blocks or blocks != list(range(1, len(blocks) + 1)):
        raise UserError(f"{where}: {what} is not a rosinality StyleGAN2 discriminator (no convs.N ResBlocks)")
    res = 2 ** (len(blocks) + 2)
    out = {f"blocks.b{res}.fromrgb.weight": _t(sd, "convs.0.0.weight", where, what),
           f"blocks.b{res}.fromrgb.bias": _t(sd, "convs.0.1.bias", where, what)}
    channels = {}
    for k in blocks:
        r = res // 2 ** (k - 1)
        b = f"blocks.b{r}"
        out.update({f"{b}.conv0.weight": _t(sd, f"convs.{k}.conv1.0.weight", where, what),
                    f"{b}.conv0.bias": _t(sd, f"convs.{k}.conv1.1.bias", where, what),
                    f"{b}.conv1.weight": _t(sd, f"convs.{k}.conv2.1.weight", where, what),
                    f"{b}.conv1.bias": _t(sd, f"convs.{k}.conv2.2.bias", where, what),
                    f"{b}.skip.weight": _t(sd, f"convs.{k}.skip.1.weight", where, what)})
        channels[r] = out[f"{b}.conv0.weight"].shape[0]
        channels[r // 2] = out[f"{b}.conv1.weight"].shape[0]
    for src, dst in (("final_conv.0.weight", "conv.weight"), ("final_conv.1.bias", "conv.bias"),
                     ("final_linear.0.weight", "fc.weight"), ("final_linear.0.bias", "fc.bias"),
                     ("final_linear.1.weight", "out.weight"), ("final_linear.1.bias", "out.bias")):
        out[f"epilogue.{dst}"] = _t(sd, src, where, what)
    channels.setdefault(4, out["epilogue.conv.weight"].shape[0])
    base, cmax = _layout(channels, where, what)
    cfg = dict(resolution=res, channels=out[f"blocks.b{res}.fromrgb.weight"].shape[1], channel_base=base,
               channel_max=cmax, mbstd_group=4, mbstd_channels=1)
    return cfg, out


def convert(path) -> Converted:
    ckpt = read(path)
    where = str(path)
    g_cfg, g_ema = generator(ckpt["g_ema"], where, "g_ema", ckpt.get("latent_avg"))
    notes = []
    if isinstance(ckpt.get("g"), dict):
        cfg, g = generator(ckpt["g"], where, "g", ckpt.get("latent_avg"))
        if cfg != g_cfg:
            raise UserError(f"{where}: g and g_ema have different sizes; the checkpoint is inconsistent")
    else:
        g = dict(g_ema)
        notes.append("the checkpoint holds no 'g': G starts as a copy of g_ema")
    if not isinstance(ckpt.get("latent_avg"), torch.Tensor):
        notes.append(f"no latent_avg in the checkpoint: w_avg (truncation's centre) is the mean w of "
                     f"{W_AVG_SAMPLES:,} z drawn from seed 0")
    tensors = {"G": g, "G_ema": g_ema}
    d_cfg = None
    if isinstance(ckpt.get("d"), dict):
        d_cfg, tensors["D"] = discriminator(ckpt["d"], where)
        if d_cfg["resolution"] != g_cfg["resolution"]:
            raise UserError(f"{where}: d is {d_cfg['resolution']}x{d_cfg['resolution']} but g_ema "
                            f"{g_cfg['resolution']}x{g_cfg['resolution']}; the checkpoint is inconsistent")
    else:
        notes.append("the checkpoint holds no 'd': the converted checkpoint can generate but not resume training")
    return Converted(source=where, fmt=FORMAT, G=g_cfg, D=d_cfg, tensors=tensors, notes=notes)
