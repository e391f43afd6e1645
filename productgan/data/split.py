"""Deterministic train/val/test membership from image content.

Each image's decoded pixels are hashed (sha256 over shape and bytes); the first 8 bytes of the digest give a
number in [0, 1) that picks the split. The same pixels always land in the same split, whatever the file
name, the order of the input or the machine; the digest also finds exact duplicates.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "val", "test")


def pixel_digest(pixels: np.ndarray) -> bytes:
    """sha256 of an H×W (grey) or H×W×3 (RGB) uint8 array, shape included so equal bytes of other shapes differ."""
    h = hashlib.sha256(repr(tuple(pixels.shape)).encode("ascii"))
    h.update(np.ascontiguousarray(pixels, dtype=np.uint8).data)
    return h.digest()


def unit_interval(digest: bytes) -> float:
    """The digest as a number in [0, 1)."""
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(digest: bytes, official: str | None, val_fraction: float, test_fraction: float) -> str:
    """Split of one image.

    ``official`` is the split its source assigned (Fashion-MNIST's t10k files are ``test``). An official
    ``test`` stays test; an official ``train`` gives ``val_fraction`` of itself to val; an image without an
    official split goes to test with probability ``test_fraction`` and the rest is shared between train and
    val as for an official train split.
    """
    u = unit_interval(digest)
    if official == "test":
        return "test"
    if official != "train":
        if u < test_fraction:
            return "test"
        u = (u - test_fraction) / (1.0 - test_fraction)  # uniform again over the non-test share
    return "val" if u < val_fraction else "train"
