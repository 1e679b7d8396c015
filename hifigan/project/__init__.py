"""Projecting images into a StyleGAN's latent space and editing the embeddings (Image2StyleGAN,
Abdal et al. 2019, arXiv:1904.03189; Image2StyleGAN++, Abdal et al. 2020, arXiv:1911.11544).

    from hifigan.project import make_config, project, crossover, style_transfer
    result = project(G, target, make_config("image2stylegan", loss="mse"))   # target [1, C, H, W] in [-1, 1]
"""
from hifigan.project.config import PRESETS, ProjectConfig, make_config
from hifigan.project.edits import crossover, local_edit, style_transfer
from hifigan.project.image2stylegan import Projection, explicit_noise, noise_modules, project, w_stats
from hifigan.project.quality import psnr, ssim

__all__ = ["PRESETS", "ProjectConfig", "make_config", "project", "Projection", "explicit_noise", "noise_modules",
           "w_stats", "crossover", "style_transfer", "local_edit", "psnr", "ssim"]
