"""Training images in their frame (square, or ``preprocess.aspect`` such as 3:4; productgan.frame): fit the photo
into the frame, pad the rest with a background colour.

The photo's aspect ratio is kept (a tall dress stays tall). Resampling is Lanczos; big photos are first shrunk by an
integer factor (``reducing_gap``), which is both faster and as sharp. The padding colour is ``white``,
``black`` or ``auto``: the per-channel median of the image's outermost pixels, so a product shot on grey
paper is padded with that grey instead of a visible frame. A cut-out (``RGBA``, ``preprocess.channels: 4``)
is resampled with premultiplied alpha (no dark fringe from its transparent pixels' colour) and padded
transparent, whatever ``background`` says: around a cut-out there is nothing.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from productgan.data.decode import on_white
from productgan.frame import SQUARE, frame_size
from productgan.render import MODES

BACKGROUNDS = ("auto", "white", "black")
RESOLUTIONS = (28, 32, 64, 128, 256)
_REDUCING_GAP = 3.0


TRANSPARENT = (255, 255, 255, 0)  # a cut-out's padding: white where a viewer ignores alpha


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """An ``L``/``RGB``/``RGBA`` image in the output mode: 1 channel -> ``L`` (ITU-R 601 luma), 3 -> ``RGB``
    (alpha composited on white), 4 -> ``RGBA`` (a photo without alpha is opaque)."""
    mode = MODES[channels]
    if img.mode == mode:
        return img
    if img.mode == "RGBA":  # to L or RGB: on white, as decode does for photos trained without alpha
        img = on_white(img)
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


def fit_and_pad(img: Image.Image, resolution: int, background: str, aspect: str = SQUARE) -> np.ndarray:
    """``img`` (mode ``L``, ``RGB`` or ``RGBA``) as a C×H×W uint8 array in the ``resolution`` frame at ``aspect``,
    its aspect ratio kept."""
    height, width = frame_size(resolution, aspect)
    w, h = img.size
    cutout = img.mode == "RGBA"
    if w * height != h * width:  # the photo's shape is not the frame's: there will be padding
        colour = TRANSPARENT if cutout else background_colour(img, background)
    if (w, h) != (width, height):
        scale = min(width / w, height / h)
        size = (min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale))))
        img = img.convert("RGBa") if cutout else img
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
        img = img.convert("RGBA") if cutout else img
    if img.size != (width, height):
        canvas = Image.new(img.mode, (width, height), colour if img.mode != "L" else colour[0])
        canvas.paste(img, ((width - img.size[0]) // 2, (height - img.size[1]) // 2))
        img = canvas
    pixels = np.asarray(img)
    if cutout:  # one colour under full transparency (photos store anything there): G need not learn noise
        pixels = pixels.copy()
        pixels[pixels[..., 3] == 0] = TRANSPARENT
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def fit_and_pad_grey_batch(
    images: np.ndarray, resolution: int, channels: int, background: str, aspect: str = SQUARE
) -> np.ndarray:
    """N×H×W uint8 grey images (an IDX file) as N×C×R×R (4 channels: grey RGB, opaque). Native-size images
    are taken as they are."""
    n, h, w = images.shape
    frame = frame_size(resolution, aspect)
    if (h, w) == frame:
        out = images[:, None]
    else:
        out = np.empty((n, 1, *frame), dtype=np.uint8)
        for i in range(n):
            out[i] = fit_and_pad(Image.fromarray(images[i], "L"), resolution, background, aspect)
    if channels == 4:
        return np.concatenate([np.repeat(out, 3, axis=1), np.full_like(out, 255)], axis=1)
    return np.repeat(out, channels, axis=1) if channels > 1 else out
