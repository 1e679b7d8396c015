"""Video files: uint8 frames -> a looping GIF (PIL) or an H.264 MP4 (imageio-ffmpeg), written atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hifigan.errors import UserError
from hifigan.io import atomic_write

VIDEO_FORMATS = (".gif", ".mp4")


def _ffmpeg(path):
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError(f"--video {path}: writing MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg); "
                        f"or give a .gif path") from None
    return imageio_ffmpeg


def video_format(path) -> str:
    """'.gif' or '.mp4' (checking that an MP4 can be written), else UserError."""
    ext = Path(path).suffix.lower()
    if ext not in VIDEO_FORMATS:
        raise UserError(f"--video {path}: cannot write {ext or 'a file without an extension'}; "
                        f"give a .gif or .mp4 path")
    if ext == ".mp4":
        _ffmpeg(path)
    return ext


def _write_gif(tmp, frames: np.ndarray, fps: float) -> None:
    from PIL import Image
    imgs = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    # GIF delays count 1/100 s, so 30 fps plays at 33. PIL folds a frame identical to the one
    # before into it (adding its delay), so a still stretch keeps its time with fewer frames.
    imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=max(10, round(1000 / fps)),
                 loop=0)


def _write_mp4(tmp, frames: np.ndarray, fps: float, ffmpeg) -> None:
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    h, w = frames.shape[1:3]
    # The temporary name ends in .tmp, so the container is named explicitly; H.264 in yuv420p needs
    # even sides (macro_block_size=2 pads odd ones).
    writer = ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                                 macro_block_size=2, output_params=["-f", "mp4"], ffmpeg_log_level="error")
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()


def write_video(path, frames: np.ndarray, fps: float = 30.0) -> None:
    """uint8 frames [T, H, W, C] -> a looping GIF (PIL) or an H.264 MP4 (imageio-ffmpeg), written atomically."""
    path = Path(path)
    if video_format(path) == ".gif":
        atomic_write(path, lambda tmp: _write_gif(tmp, frames, fps))
    else:
        ffmpeg = _ffmpeg(path)
        atomic_write(path, lambda tmp: _write_mp4(tmp, frames, fps, ffmpeg))
