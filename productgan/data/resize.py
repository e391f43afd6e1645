"""Square training images: fit the longer side to the resolution, pad the rest with a background colour.

Aspect ratio is kept (a tall dress stays tall). Resampling is Lanczos; big photos are first shrunk by an
integer factor (``reducing_gap``), which is both faster and as sharp. The padding colour is ``white``,
``black`` or ``auto``: the per-channel median of the image's outermost pixels, so a product shot on grey
paper is padded with that grey instead of a visible frame.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BACKGROUNDS = ("auto", "white", "black")
RESOLUTIONS = (28, 32, 64, 128, 256)
_REDUCING_GAP = 3.0


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """An ``L``/``RGB`` image in the output mode: 1 channel -> ``L`` (ITU-R 601 luma), 3 -> ``RGB``."""
    mode = "L" if channels == 1 else "RGB"
    return img if img.mode == mode else img.convert(mode)


def background_colour(img: Image.Image, background: str) -> tuple[int, ...]:
    """Padding colour for an ``L``/``RGB`` image: white, black, or (auto) the median of its 1-pixel frame."""
    channels = len(img.getbands())
    if background == "white":
        return (255,) * channels
    if background == "black":
        return (0,) * channels
    if background != "auto":
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    w, h = img.size
    edges = [(0, 0, w, 1), (0, h - 1, w, h), (0, 1, 1, h - 1), (w - 1, 1, w, h - 1)]  # each frame pixel once
    # crops of the full-size image: its real border, before resampling blurs the product into it
    border = np.concatenate([np.asarray(img.crop(box)).reshape(-1, channels) for box in edges if box[3] > box[1]])
    return tuple(int(v) for v in np.rint(np.median(border, axis=0)))


def fit_and_pad(img: Image.Image, resolution: int, background: str) -> np.ndarray:
    """``img`` (mode ``L`` or ``RGB``) as a C×resolution×resolution uint8 array, aspect ratio kept."""
    w, h = img.size
    if w != h:
        colour = background_colour(img, background)
    if (w, h) != (resolution, resolution):
        scale = resolution / max(w, h)
        size = (min(resolution, max(1, round(w * scale))), min(resolution, max(1, round(h * scale))))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    if img.size != (resolution, resolution):
        canvas = Image.new(img.mode, (resolution, resolution), colour if img.mode != "L" else colour[0])
        canvas.paste(img, ((resolution - img.size[0]) // 2, (resolution - img.size[1]) // 2))
        img = canvas
    pixels = np.asarray(img)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def fit_and_pad_grey_batch(images: np.ndarray, resolution: int, channels: int, background: str) -> np.ndarray:
    """N×H×W uint8 grey images (an IDX file) as N×C×R×R. Native-size images are taken as they are."""
    n, h, w = images.shape
    if (h, w) == (resolution, resolution):
        out = images[:, None]
    else:
        out = np.empty((n, 1, resolution, resolution), dtype=np.uint8)
        for i in range(n):
            out[i] = fit_and_pad(Image.fromarray(images[i], "L"), resolution, background)
    return np.repeat(out, channels, axis=1) if channels > 1 else out
