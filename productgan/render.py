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


def to_pil(image_chw: np.ndarray) -> Image.Image:
    """uint8 (C, H, W) with C = 1 or 3 -> a PIL image (mode L or RGB)."""
    if image_chw.ndim != 3 or image_chw.shape[0] not in (1, 3):
        raise ValueError(f"expected a uint8 (1|3, H, W) image, got shape {image_chw.shape}")
    if image_chw.shape[0] == 1:
        return Image.fromarray(np.ascontiguousarray(image_chw[0]), "L")
    return Image.fromarray(np.ascontiguousarray(np.transpose(image_chw, (1, 2, 0))), "RGB")


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
        bg = Image.new("RGB", image.size, (200, 200, 200))
        bg.paste(image, mask=image.getchannel("A"))
        image = bg
    image = image.convert("RGB")
    k = cell / max(image.size)
    size = (max(1, round(image.width * k)), max(1, round(image.height * k)))
    fitted = image.resize(size, Image.Resampling.LANCZOS)
    out = Image.new("RGB", (cell, cell), (0, 0, 0))
    out.paste(fitted, ((cell - size[0]) // 2, (cell - size[1]) // 2))
    return out


def labelled_grid(
    images: Sequence[Image.Image], labels: Sequence[str], cols: int | None = None, cell: int = 112, pad: int = 2
) -> Image.Image:
    """A grid of ``images`` (row-major), each with its label written underneath."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not images:
        raise ValueError("no images to put in a grid")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    cell = max(cell, 16)
    step_x, step_y = cell + pad, cell + CAPTION_PX + pad
    sheet = Image.new("RGB", (cols * step_x + pad, rows * step_y + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(CAPTION_PX - 3)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        x, y = pad + (i % cols) * step_x, pad + (i // cols) * step_y
        sheet.paste(_cell_image(image, cell), (x, y))
        text = label
        while text and draw.textlength(text, font=font) > cell:
            text = text[:-1]  # clip long labels to the cell width
        draw.text((x + 1, y + cell + 1), text, fill=(0, 0, 0), font=font)
    return sheet


def strip(images: Sequence[Image.Image], labels: Sequence[str], cell: int = 112) -> Image.Image:
    """One row of labelled images (an interpolation)."""
    return labelled_grid(images, labels, cols=len(images), cell=cell)
