"""Images out: uint8 arrays to PIL, PNG bytes / base64, labelled grids and strips, safe file names."""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CAPTION_PX = 14  # caption band height under each grid cell


MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels -> PIL mode
CUTOUT_BACKDROP = 200  # light grey behind a cut-out in grids: white products stay visible


def to_pil(image_chw: np.ndarray) -> Image.Image:
    """uint8 (C, H, W) with C = 1, 3 or 4 -> a PIL image (mode L, RGB or RGBA: a cut-out keeps its alpha)."""
    if image_chw.ndim != 3 or image_chw.shape[0] not in MODES:
        raise ValueError(f"expected a uint8 (1|3|4, H, W) image, got shape {image_chw.shape}")
    if image_chw.shape[0] == 1:
        return Image.fromarray(np.ascontiguousarray(image_chw[0]), "L")
    return Image.fromarray(np.ascontiguousarray(np.transpose(image_chw, (1, 2, 0))), MODES[image_chw.shape[0]])


def flatten_alpha(images: np.ndarray, backdrop: int = CUTOUT_BACKDROP) -> np.ndarray:
    """uint8 (..., 4, H, W) cut-outs composited on a grey ``backdrop`` -> (..., 3, H, W); other images as
    they are: pictures people look at (grids)."""
    if images.shape[-3] != 4:
        return images
    alpha = images[..., 3:, :, :].astype(np.float32) / 255.0
    out = images[..., :3, :, :] * alpha + float(backdrop) * (1.0 - alpha)
    return np.rint(out).astype(np.uint8)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_base64(image: Image.Image) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def decode_png_base64(text: str) -> Image.Image:
    """The inverse of ``png_base64`` (for clients and tests)."""
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def safe_name(text: str) -> str:
    """A file-name-safe form of a category name: "T-shirt/top" -> "T-shirt-top"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "category"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _cell_image(image: Image.Image, cell: int) -> Image.Image:
    """``image`` fitted into a ``cell``-pixel square (small images upscaled so the grid is legible)."""
    if image.mode == "RGBA":  # show transparency on a light checker-free grey
        bg = Image.new("RGB", image.size, (CUTOUT_BACKDROP,) * 3)
        bg.paste(image, mask=image.getchannel("A"))
        image = bg
    image = image.convert("RGB")
    k = cell / max(image.size)
    size = (max(1, round(image.width * k)), max(1, round(image.height * k)))
    fitted = image.resize(size, Image.Resampling.LANCZOS)
    out = Image.new("RGB", (cell, cell), (0, 0, 0))
    out.paste(fitted, ((cell - size[0]) // 2, (cell - size[1]) // 2))
    return out


def tile(images: np.ndarray, cols: int, pad: int = 2, fill: int = 0) -> np.ndarray:
    """The one grid layout: uint8 (N, C, H, W) -> one uint8 (H', W', C) picture, row-major, ``cols`` images
    a row, ``pad`` pixels of ``fill`` between and around them."""
    n, c, h, w = images.shape
    cols = max(1, cols)
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        out[y : y + h, x : x + w] = img.transpose(1, 2, 0)
    return out


def name_rows(grid_hwc: np.ndarray, names: Sequence[str], row_height: int, width: int = 90) -> Image.Image:
    """``grid_hwc`` with a white column of ``width`` pixels on its left naming each ``row_height`` row."""
    c = grid_hwc.shape[2]
    mode, white, black = ("L", 255, 0) if c == 1 else ("RGB", (255, 255, 255), (0, 0, 0))
    canvas = Image.new(mode, (width + grid_hwc.shape[1], grid_hwc.shape[0]), color=white)
    canvas.paste(Image.fromarray(grid_hwc[..., 0] if c == 1 else grid_hwc, mode), (width, 0))
    draw = ImageDraw.Draw(canvas)
    for row, name in enumerate(names):
        draw.text((2, row * row_height + max(row_height // 2 - 6, 0)), name[:14], fill=black)
    return canvas


def labelled_grid(
    images: Sequence[Image.Image], labels: Sequence[str], cols: int | None = None, cell: int = 112, pad: int = 2
) -> Image.Image:
    """A grid of ``images`` (row-major), each fitted into a ``cell`` square with its label underneath."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not images:
        raise ValueError("no images to put in a grid")
    cell = max(cell, 16)
    font = _font(CAPTION_PX - 3)
    cells = []
    for image, label in zip(images, labels, strict=True):
        captioned = Image.new("RGB", (cell, cell + CAPTION_PX), (255, 255, 255))
        captioned.paste(_cell_image(image, cell), (0, 0))
        draw = ImageDraw.Draw(captioned)
        text = label
        while text and draw.textlength(text, font=font) > cell:
            text = text[:-1]  # clip long labels to the cell width
        draw.text((1, cell + 1), text, fill=(0, 0, 0), font=font)
        cells.append(np.asarray(captioned).transpose(2, 0, 1))
    cols = cols or math.ceil(math.sqrt(len(images)))
    return Image.fromarray(tile(np.stack(cells), cols, pad, fill=255), "RGB")


def strip(images: Sequence[Image.Image], labels: Sequence[str], cell: int = 112) -> Image.Image:
    """One row of labelled images (an interpolation)."""
    return labelled_grid(images, labels, cols=len(images), cell=cell)
