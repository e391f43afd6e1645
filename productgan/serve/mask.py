"""Which pixels of a product photo are the product: the mask every colour edit, geometry edit and background
change of ``edit.py`` works through.

A cut-out (an alpha channel that is transparent somewhere): the alpha. A photo: the background colour is the
median of the image border (white for shop photos, black for Fashion-MNIST), and the background *region* is
what can be reached from a background-coloured border pixel through pixels within ``MASK_LOW`` of that colour
or through a soft shadow: pixels as coloured as the background, only darker (at least ``SHADOW_MIN_K`` of its
brightness, within ``SHADOW_CHROMA`` of its chromaticity), entered by steps of at most ``SHADOW_STEP`` from a
neighbour. A product's outline is a sharp step, a shadow's a gentle ramp: a light-grey shadow under a shoe is
background, a grey shoe is not. Light parts that the product encloses are background when they are flat
background colour (the gap in a bag's handle, a white print or stripe) and product when they have folds.

The mask is 0 on the background region, 1 on the light parts of the product, and elsewhere a ramp of the
distance to the background colour (``MASK_LOW`` -> 0, ``MASK_HIGH`` -> 1): an anti-aliased edge (and JPEG
ringing around it) is blended, not painted.

What colours cannot tell (benchmarks/RESULTS.md "Edits on colour photos"): a white or very light grey product
on white whose shading reaches the border by gentle steps is taken for background and left as it is (use a
cut-out); a model wearing the product is part of it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

BORDER = 2  # border width (px) sampled for the background colour
# Distance ramp (largest channel difference from the background colour): <= MASK_LOW is background colour
# (JPEG noise, paper texture), >= MASK_HIGH is product.
MASK_LOW = 10.0
MASK_HIGH = 40.0
# A soft shadow: at least this share of the background's brightness (on white: up to 64 levels darker) ...
SHADOW_MIN_K = 0.75
SHADOW_CHROMA = 12.0  # ... within this many levels of the background's colour scaled to its brightness ...
SHADOW_STEP = 12.0  # ... and no more than this change between neighbouring pixels (outlines step further)
# A light region the product encloses is product (not a see-through gap or a print) when at least this share of
# its pixels is shaded off the background colour (half: JPEG noise in a gap at quality 85 shades a third) ...
SHADED_SHARE = 0.5
SHADED_MIN_PX = 25  # ... it is no speck ...
RINGING_PX = 2  # ... and it keeps further than this from the outer background (JPEG ringing cuts specks off)


def background_color(image: Image.Image, border: int = BORDER) -> tuple[int, ...]:
    """Median colour of the image border (one value per channel of ``image``)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    b = max(1, min(border, arr.shape[0] // 2, arr.shape[1] // 2))
    ring = np.concatenate(
        [arr[:b].reshape(-1, arr.shape[2]), arr[-b:].reshape(-1, arr.shape[2]),
         arr[:, :b].reshape(-1, arr.shape[2]), arr[:, -b:].reshape(-1, arr.shape[2])]
    )
    return tuple(int(v) for v in np.median(ring, axis=0).round())


def product_mask(image: Image.Image, background: tuple[int, ...] | None = None) -> np.ndarray:
    """Soft product mask (H, W) float in [0, 1]: alpha when the image has one, else from the background
    region and colour (``background`` or the border's median colour); see the module docstring."""
    if image.mode in ("RGBA", "LA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float64) / 255.0
        if alpha.min() < 1.0:
            return alpha
        image = image.convert("RGB" if image.mode == "RGBA" else "L")  # opaque everywhere: a photo
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[..., None]
    bg = np.asarray(background if background is not None else background_color(image), dtype=np.float64)
    bg = bg[: arr.shape[2]]
    dist = np.abs(arr - bg).max(-1)
    plain = dist <= MASK_LOW
    light = plain | _shadow_like(arr, bg)
    outer = _reached_from_border(arr, plain, light)
    inside = light & ~outer
    folds = _enclosed(inside, plain, outer)
    mask = np.clip((dist - MASK_LOW) / (MASK_HIGH - MASK_LOW), 0.0, 1.0)
    mask[folds] = 1.0
    mask[inside & ~folds] = 0.0
    mask[outer] = 0.0
    return mask


def _shadow_like(arr: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels as coloured as the background, only somewhat darker (what a soft shadow looks like)."""
    norm = float(bg @ bg)
    if norm == 0:  # black background: nothing is darker, no shadows
        return np.zeros(arr.shape[:2], bool)
    k = (arr @ bg) / norm  # brightness relative to the background's, along its colour
    chroma = np.abs(arr - k[..., None] * bg).max(-1)
    return (k >= SHADOW_MIN_K) & (chroma <= SHADOW_CHROMA)


def _reached_from_border(arr: np.ndarray, plain: np.ndarray, light: np.ndarray) -> np.ndarray:
    """(H, W) bool: the ``light`` pixels (background-coloured or shadow-like) connected to a background-coloured
    pixel of the border, from neighbour to neighbour: freely between background-coloured pixels, by steps of at
    most SHADOW_STEP otherwise (a shadow's ramp, not a product's outline)."""
    h, w = plain.shape
    index = np.arange(h * w).reshape(h, w)
    rows, cols = [], []
    for a, b in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),  # left-right neighbours
                 ((slice(0, -1), slice(None)), (slice(1, None), slice(None)))):  # up-down neighbours
        step = np.abs(arr[a] - arr[b]).max(-1)
        joined = light[a] & light[b] & ((plain[a] & plain[b]) | (step <= SHADOW_STEP))
        rows.append(index[a][joined])
        cols.append(index[b][joined])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(h * w, h * w))
    _, labels = connected_components(graph, directed=False)
    labels = labels.reshape(h, w)
    edge = np.zeros((h, w), bool)
    edge[0], edge[-1], edge[:, 0], edge[:, -1] = True, True, True, True
    return np.isin(labels, np.unique(labels[edge & plain])) & light


def _enclosed(inside: np.ndarray, plain: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """(H, W) bool: the light regions the outer background does not reach (``inside``) that are product: those
    with folds (at least SHADED_SHARE of their pixels shaded below the background colour, as a white cap's
    inside its seam) that keep more than RINGING_PX from the outer background. The others are background: flat
    background colour (the gap in a handle, a white print) or light specks cut off by JPEG ringing around
    the outline."""
    labels, count = ndimage.label(inside)
    if count == 0:
        return np.zeros_like(inside)
    index = np.arange(1, count + 1)
    size = ndimage.sum_labels(inside, labels, index)
    shaded = ndimage.sum_labels(inside & ~plain, labels, index)
    near = ndimage.sum_labels(ndimage.binary_dilation(outer, iterations=RINGING_PX), labels, index)
    product = (size >= SHADED_MIN_PX) & (shaded >= SHADED_SHARE * size) & (near == 0)
    return np.concatenate([[False], product])[labels]


def mask_bbox(mask: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels above ``threshold`` (right/bottom exclusive); None if empty."""
    ys, xs = np.nonzero(mask > threshold)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
