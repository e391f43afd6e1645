"""A sample grid for eyeballing: one row per category (name on the left), ``per_category`` seeded samples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

LABEL_WIDTH = 90  # pixels for the category name left of each row


def category_grid(
    sample_fn: Callable[[np.ndarray, int], np.ndarray], categories: list[str], per_category: int, seed: int = 0
) -> Image.Image:
    labels = np.repeat(np.arange(len(categories), dtype=np.int64), per_category)
    images = np.asarray(sample_fn(labels, seed))
    _, c, h, w = images.shape
    tiles = images.reshape(len(categories), per_category, c, h, w).transpose(0, 3, 1, 4, 2)
    body = tiles.reshape(len(categories) * h, per_category * w, c)
    mode = "L" if c == 1 else "RGB"
    canvas = Image.new(mode, (LABEL_WIDTH + body.shape[1], body.shape[0]), color=255 if c == 1 else (255, 255, 255))
    canvas.paste(Image.fromarray(body[..., 0] if c == 1 else body, mode), (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    for row, name in enumerate(categories):
        draw.text((2, row * h + max(h // 2 - 6, 0)), name[:14], fill=0 if c == 1 else (0, 0, 0))
    return canvas
