"""Denoising before resizing (params ``preprocess.denoise``), one of the article's remedies against unstable
GAN training: noisy photos teach the generator noise.

``median``: Pillow's median filter (``denoise_size`` x ``denoise_size`` window): removes speckle and salt-and-
pepper noise, keeps edges. ``bilateral``: OpenCV's bilateral filter, edge-preserving smoothing: each pixel
becomes a mean of its ``denoise_size`` neighbourhood weighted by distance (sigma ``denoise_size`` / 2 px) and
by how close the neighbour's value is (sigma ``denoise_sigma`` grey levels), so flat areas are smoothed and
outlines are not. Both run on the decoded image at its own size, before it is resized to the training
resolution, so the filter sees the noise at the scale it was made.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

DENOISERS = ("none", "median", "bilateral")


def check(method: str, size: int, sigma: float) -> tuple[str, str] | None:
    """Why these settings cannot be used, as (key, problem), or None."""
    if method not in DENOISERS:
        return "denoise", f"must be one of {DENOISERS}, got {method!r}"
    if size < 3 or size % 2 == 0:
        return "denoise_size", f"must be an odd window of 3 or more pixels, got {size}"
    if not sigma > 0:
        return "denoise_sigma", f"must be positive, got {sigma}"
    return None


def library(method: str) -> str | None:
    """The library and version that does ``method`` (recorded in the prepared manifest)."""
    if method == "median":
        import PIL

        return f"pillow {PIL.__version__}"
    if method == "bilateral":
        import cv2

        return f"opencv {cv2.__version__}"
    return None


def denoise_image(img: Image.Image, method: str, size: int = 3, sigma: float = 25.0) -> Image.Image:
    """``img`` (mode ``L``, ``RGB`` or ``RGBA``) filtered by ``method``; the same image for ``none``. A cut-out's
    colours are filtered and its alpha kept (its edge is the product's outline, not noise)."""
    if method == "none":
        return img
    if img.mode == "RGBA":
        out = denoise_image(img.convert("RGB"), method, size, sigma)
        out.putalpha(img.getchannel("A"))
        return out
    if method == "median":
        return img.filter(ImageFilter.MedianFilter(size))
    if method == "bilateral":
        import cv2

        out = cv2.bilateralFilter(np.asarray(img), size, float(sigma), size / 2.0)
        return Image.fromarray(out, img.mode)
    raise ValueError(check(method, size, sigma) or method)


def denoise_grey_batch(images: np.ndarray, method: str, size: int = 3, sigma: float = 25.0) -> np.ndarray:
    """N×H×W uint8 grey images (an IDX file), each filtered by ``method``."""
    if method == "none":
        return images
    return np.stack([np.asarray(denoise_image(Image.fromarray(im, "L"), method, size, sigma)) for im in images])
