"""Edits for product images (generated or photographed): colour, size, angle, resolution, background.

Pure functions on PIL images. Every edit needs to know which pixels are the product: ``product_mask``
(``mask.py``: the background region reached from the border, shadows included, or the alpha of a cut-out).
Colour edits change the product only: the background keeps its pixels exactly. In a cut-out, every pixel
that shows (alpha > 0) is the product's own colour (straight alpha), so it is recoloured in full and its
alpha kept. Order of work in ``apply_edits``: colour (recolour, hue, saturation, brightness),
then geometry about the product's centre (scale, rotate, flip), then output size, then background.
What may be asked (the ``Edits`` fields, parsing and validation) is in ``edit_request.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from productgan.serve.edit_request import EditError, Edits, parse_color  # noqa: F401 (the edit API re-exports them)
from productgan.serve.mask import background_color, mask_bbox, product_mask  # noqa: F401 (re-exported)

# Rec. 601 luma weights (the W3C "color" blend mode uses the same): what the eye reads as shading.
_LUMA = np.array([0.3, 0.59, 0.11])


# --- colour spaces (vectorised, floats in [0, 1]) ------------------------------------------------------


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> (..., 3) HSV with hue in degrees [0, 360)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    chroma = mx - mn
    safe = np.where(chroma > 0, chroma, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(chroma > 0, h * 60.0, 0.0) % 360.0
    s = np.where(mx > 0, chroma / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([h, s, mx], -1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0] % 360.0, hsv[..., 1], hsv[..., 2]
    c = v * s
    hp = h / 60.0
    x = c * (1 - np.abs(hp % 2 - 1))
    z = np.zeros_like(h)
    sector = np.floor(hp).astype(int) % 6
    choices = [
        np.stack(t, -1) for t in ((c, x, z), (x, c, z), (z, c, x), (z, x, c), (x, z, c), (c, z, x))
    ]
    rgb = np.choose(sector[..., None], choices)
    return rgb + (v - c)[..., None]


def mean_hue(image: Image.Image, mask: np.ndarray | None = None) -> float | None:
    """The product's mean hue in degrees: the circular mean weighted by chroma (x mask).

    Grey pixels have no hue and weigh nothing; None when the image holds no colour at all.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    hsv = rgb_to_hsv(rgb)
    weight = rgb.max(-1) - rgb.min(-1)
    if mask is not None:
        weight = weight * mask
    angle = np.deg2rad(hsv[..., 0])
    x, y = float((weight * np.cos(angle)).sum()), float((weight * np.sin(angle)).sum())
    if math.hypot(x, y) < 1e-9:
        return None
    return math.degrees(math.atan2(y, x)) % 360.0


def hue_distance(a: float, b: float) -> float:
    """Smallest angle between two hues in degrees (0..180)."""
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def _lum(rgb: np.ndarray) -> np.ndarray:
    return rgb @ _LUMA


def _set_lum(rgb: np.ndarray, lum: np.ndarray) -> np.ndarray:
    """W3C compositing SetLum + ClipColor: give ``rgb`` luminance ``lum``; hue is kept exactly, chroma is
    reduced only where a channel would leave [0, 1]."""
    c = rgb + (lum - _lum(rgb))[..., None]
    lum = _lum(c)[..., None]
    n, x = c.min(-1, keepdims=True), c.max(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(n < 0, lum + (c - lum) * lum / np.where(lum - n != 0, lum - n, 1.0), c)
        x = low.max(-1, keepdims=True)
        high = np.where(x > 1, lum + (low - lum) * (1 - lum) / np.where(x - lum != 0, x - lum, 1.0), low)
    return np.clip(high, 0.0, 1.0)


# --- the working state -------------------------------------------------------------------------------


@dataclass
class _Work:
    """The image being edited: colour pixels (mode L or RGB), the product mask (mode L) and the
    background colour geometry fills with. ``alpha`` says the mask came from the input's alpha."""

    pixels: Image.Image
    mask: Image.Image
    fill: tuple[int, ...]
    alpha: bool

    def colour_weight(self) -> np.ndarray:
        """(H, W) in [0, 1]: how much a colour edit changes each pixel. The mask, except in a cut-out: there a
        semi-transparent edge pixel holds the product's colour, not a mix with a background, and a partial
        change would leave a rim of the old colour."""
        m = np.asarray(self.mask, dtype=np.float64) / 255.0
        return (m > 0).astype(np.float64) if self.alpha else m

    def centre(self) -> tuple[float, float]:
        box = mask_bbox(np.asarray(self.mask, dtype=np.float64) / 255.0)
        if box is None:
            return self.pixels.width / 2.0, self.pixels.height / 2.0
        return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _start(image: Image.Image) -> _Work:
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA" if image.mode != "LA" else "LA")
        mask = image.getchannel("A")
        pixels = image.convert("RGB" if image.mode == "RGBA" else "L")
        if mask.getextrema()[0] < 255:
            return _Work(pixels, mask, (0,) * len(pixels.getbands()), alpha=True)
        image = pixels  # opaque everywhere: a photo saved with an alpha channel, masked by its colours
    if image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode in ("1", "I", "I;16", "F") else "RGB")
    fill = background_color(image)
    mask = product_mask(image, fill)
    return _Work(image, Image.fromarray((mask * 255).round().astype(np.uint8), "L"), fill, alpha=False)


def _to_rgb(work: _Work) -> None:
    if work.pixels.mode != "RGB":
        work.pixels = work.pixels.convert("RGB")
        work.fill = (work.fill[0],) * 3


# --- the edits ---------------------------------------------------------------------------------------


def _colour(work: _Work, edits: Edits) -> None:
    _to_rgb(work)
    rgb = np.asarray(work.pixels, dtype=np.float64) / 255.0
    coverage = np.asarray(work.mask, dtype=np.float64) / 255.0
    m = work.colour_weight()
    out = rgb
    if edits.color is not None:
        target = np.asarray(parse_color(edits.color), dtype=np.float64) / 255.0
        lum = _lum(rgb)
        weight = coverage.sum()
        mean_lum = float((lum * coverage).sum() / weight) if weight > 0 else float(lum.mean())
        # shading kept as each pixel's offset from the product's mean luminance, centred on the target's
        new_lum = np.clip(lum - mean_lum + float(_lum(target)), 0.0, 1.0)
        out = _set_lum(np.broadcast_to(target, rgb.shape), new_lum)
    if edits.hue_shift is not None or edits.saturation is not None:
        hsv = rgb_to_hsv(out)
        if edits.hue_shift is not None:
            hsv[..., 0] = (hsv[..., 0] + edits.hue_shift) % 360.0
        if edits.saturation is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * edits.saturation, 0.0, 1.0)
        out = hsv_to_rgb(hsv)
    blended = rgb * (1 - m[..., None]) + out * m[..., None]
    work.pixels = Image.fromarray((blended * 255).round().clip(0, 255).astype(np.uint8), "RGB")


def _brightness(work: _Work, factor: float) -> None:
    arr = np.asarray(work.pixels, dtype=np.float64)
    m = work.colour_weight()
    if arr.ndim == 3:
        m = m[..., None]
    out = arr * (1 - m) + np.clip(arr * factor, 0, 255) * m
    work.pixels = Image.fromarray(out.round().astype(np.uint8), work.pixels.mode)


def _scale(work: _Work, factor: float) -> None:
    cx, cy = work.centre()
    w, h = work.pixels.size
    sw, sh = max(1, round(w * factor)), max(1, round(h * factor))
    # the product centre maps onto itself: offset = c - c * factor
    ox, oy = round(cx - cx * sw / w), round(cy - cy * sh / h)
    scaled = work.pixels.resize((sw, sh), Image.Resampling.LANCZOS)
    scaled_mask = work.mask.resize((sw, sh), Image.Resampling.LANCZOS)
    pixels = Image.new(work.pixels.mode, (w, h), _fill(work))
    mask = Image.new("L", (w, h), 0)
    pixels.paste(scaled, (ox, oy))
    mask.paste(scaled_mask, (ox, oy))
    if factor < 1:
        # the shrunk rectangle carries the old background; blend it into the fill so no seam shows
        pixels = Image.composite(pixels, Image.new(work.pixels.mode, (w, h), _fill(work)), mask)
    work.pixels, work.mask = pixels, mask


def _rotate(work: _Work, degrees: float) -> None:
    centre = work.centre()
    kw = {"resample": Image.Resampling.BICUBIC, "center": centre}
    work.pixels = work.pixels.rotate(degrees, fillcolor=_fill(work), **kw)
    work.mask = work.mask.rotate(degrees, fillcolor=0, **kw)


def _flip(work: _Work) -> None:
    work.pixels = ImageOps.mirror(work.pixels)
    work.mask = ImageOps.mirror(work.mask)


def _resize(work: _Work, size: int) -> None:
    w, h = work.pixels.size
    k = size / max(w, h)
    new = (max(1, round(w * k)), max(1, round(h * k)))
    if new != (w, h):
        work.pixels = work.pixels.resize(new, Image.Resampling.LANCZOS)
        work.mask = work.mask.resize(new, Image.Resampling.LANCZOS)


def _fill(work: _Work) -> int | tuple[int, ...]:
    return work.fill[0] if work.pixels.mode == "L" else tuple(work.fill[:3])


def _finish(work: _Work, background: str | None) -> Image.Image:
    if background == "white":
        white = Image.new(work.pixels.mode, work.pixels.size, 255 if work.pixels.mode == "L" else (255, 255, 255))
        return Image.composite(work.pixels, white, work.mask)
    if background == "transparent" or work.alpha:
        out = work.pixels.convert("RGBA")
        out.putalpha(work.mask)
        return out
    return work.pixels


def apply_edits(image: Image.Image, edits: Edits | None = None, **kwargs: Any) -> Image.Image:
    """``image`` with ``edits`` (or keyword edits) applied; the input is not changed.

    Output mode: L or RGB like the input (grey becomes RGB when a colour edit is asked), RGBA when the
    input had alpha or ``background='transparent'``. An input whose alpha is opaque everywhere is masked by
    its colours like a photo, and keeps an opaque alpha channel.
    """
    if edits is None:
        edits = Edits.from_mapping(kwargs)
    elif kwargs:
        edits = dataclasses.replace(edits, **kwargs)
    if edits.is_empty():
        return image.copy()
    work = _start(image)
    if edits.wants_colour:
        _colour(work, edits)
    if edits.brightness is not None:
        _brightness(work, edits.brightness)
    if edits.scale is not None and edits.scale != 1:
        _scale(work, edits.scale)
    if edits.rotate:
        _rotate(work, edits.rotate)
    if edits.flip:
        _flip(work)
    if edits.size is not None:
        _resize(work, edits.size)
    out = _finish(work, edits.background)
    if image.mode in ("RGBA", "LA", "PA") and out.mode in ("L", "RGB"):  # an opaque input keeps its alpha channel
        out = out.convert("LA" if out.mode == "L" else "RGBA")
    return out
