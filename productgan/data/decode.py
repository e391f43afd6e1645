"""Bytes of one photo -> a normalized Pillow image (mode ``L`` or ``RGB``, 8 bits, upright), or a refusal.

The format is found from the content (``Image.open`` on the bytes), never from the file name. Transparent
pixels are composited on white (product shots sit on white), or, with ``keep_alpha`` (cut-outs trained with
their alpha, ``preprocess.channels: 4``), kept: a photo with transparency comes back ``RGBA``. 16-bit and
float greys are scaled to 8 bits, EXIF orientation is applied and only the first frame of an animation is
used. Whatever cannot be decoded fully (empty, truncated, not an image, a decompression bomb, an unsupported
mode) comes back as a ``Refusal`` with a reason a person can act on; nothing here raises for bad input.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own default

_WHITE = 255


@dataclass(frozen=True)
class Refusal:
    """Why a file was not used."""

    reason: str


@contextmanager
def _pixel_limit(max_image_pixels: int) -> Iterator[None]:
    """Pillow's bomb check reads a module global; set it for this decode only and make its warning an error."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def decode_image(
    data: bytes, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, keep_alpha: bool = False
) -> Image.Image | Refusal:
    """Decode ``data`` into an upright 8-bit ``L`` or ``RGB`` image (``RGBA`` for a transparent photo when
    ``keep_alpha``), or say why not."""
    if not data:
        return Refusal("empty file (0 bytes)")
    with _pixel_limit(max_image_pixels):
        try:
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            img.load()  # decode now: truncation and corruption surface here, not later
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            return Refusal(f"decompression bomb: {exc} (limit: preprocess.max_image_pixels={max_image_pixels})")
        except UnidentifiedImageError:
            return Refusal("not an image: Pillow recognises no image format in the content")
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, zlib.error ...
            return Refusal(f"truncated or corrupt image data: {type(exc).__name__}: {exc}")
        try:
            img = ImageOps.exif_transpose(img)
        except Exception as exc:
            return Refusal(f"{fmt}: unreadable EXIF orientation: {type(exc).__name__}: {exc}")
        try:
            return normalize_mode(img, keep_alpha)
        except Exception as exc:
            return Refusal(f"{fmt}: cannot convert colour mode {img.mode} to RGB or grey: {type(exc).__name__}: {exc}")


def normalize_mode(img: Image.Image, keep_alpha: bool = False) -> Image.Image:
    """Any Pillow mode -> 8-bit ``L`` (grey sources) or ``RGB`` (everything else), alpha composited on white;
    with ``keep_alpha`` a mode with transparency -> ``RGBA`` instead."""
    mode = img.mode
    if keep_alpha and (mode in ("PA", "LA", "La", "RGBA", "RGBa") or "transparency" in img.info):
        return img.convert("RGBA")
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        return on_white(img) if has_alpha else img
    if mode in ("LA", "La"):
        return on_white(img.convert("LA"))
    if mode in ("RGBA", "RGBa"):
        return on_white(img.convert("RGBA"))
    if mode.startswith("I;16") or mode == "I":
        return Image.fromarray(_integer_to_uint8(np.asarray(img)), "L")
    if mode == "F":
        return Image.fromarray(_float_to_uint8(np.asarray(img, dtype=np.float64)), "L")
    if mode in ("CMYK", "YCbCr", "RGBX", "HSV"):
        return img.convert("RGB")
    if mode == "LAB":
        from PIL import ImageCms

        lab_to_srgb = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        return ImageCms.applyTransform(img, lab_to_srgb)
    raise ValueError(f"unsupported Pillow mode {mode}")


def on_white(img: Image.Image) -> Image.Image:
    """Composite an ``LA``/``RGBA`` image on a white background and drop the alpha channel."""
    background = Image.new(img.mode, img.size, (_WHITE,) * len(img.mode))
    return Image.alpha_composite(background, img).convert(img.mode[:-1])


def _integer_to_uint8(a: np.ndarray) -> np.ndarray:
    """16/32-bit grey -> 8 bits. 16-bit data uses the full 0..65535 range (PNG, TIFF), so v*255/65535
    rounded; Pillow's own convert('L') would clip everything above 255 to white. Mode ``I`` holds 8-bit
    data when nothing exceeds 255, 16-bit data when nothing exceeds 65535, else anything: then stretch."""
    a = a.astype(np.int64)
    lo, hi = int(a.min()), int(a.max())
    if lo >= 0 and hi <= 255:
        return a.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return ((a * 255 + 32767) // 65535).astype(np.uint8)
    return _stretch(a.astype(np.float64))


def _float_to_uint8(a: np.ndarray) -> np.ndarray:
    """Float grey -> 8 bits: [0, 1] data is scaled by 255, [0, 255] data is kept, anything else stretched."""
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        return np.rint(a * 255.0).astype(np.uint8)
    if lo >= 0.0 and hi <= 255.0:
        return np.rint(a).astype(np.uint8)
    return _stretch(a)


def _stretch(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
