"""The image frame: a side in pixels (``resolution``, the longer side) and an aspect ``W:H``.

A catalogue's 3:4 photo keeps its frame instead of being padded square: 64 at ``3:4`` is 48 wide and 64 high,
128 at ``4:3`` is 128 wide and 96 high. Preprocess makes its arrays in this frame, the networks start from a
small map of the same shape and double it (a 4x4 start at 1:1 is 3x4 at 3:4), so only aspects that give whole
pixels at every size are possible.
"""

from __future__ import annotations

from math import gcd

SQUARE = "1:1"


def parse_aspect(aspect: str) -> tuple[int, int]:
    """``"3:4"`` -> (3, 4): width and height, whole positive numbers, reduced (``"6:8"`` is ``3:4``)."""
    parts = str(aspect).split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"aspect {aspect!r} is not W:H with two whole positive numbers, e.g. 3:4 or 1:1")
    w, h = (int(p) for p in parts)
    k = gcd(w, h)
    return w // k, h // k


def frame_size(resolution: int, aspect: str = SQUARE) -> tuple[int, int]:
    """(height, width) of a ``resolution`` frame at ``aspect``: the longer side is ``resolution``."""
    w, h = parse_aspect(aspect)
    short, rest = divmod(resolution * min(w, h), max(w, h))
    if rest or short < 1:
        raise ValueError(f"aspect {aspect} at {resolution} px gives a shorter side of {resolution * min(w, h)}/"
                         f"{max(w, h)} pixels, not a whole number; choose a resolution it divides, or 1:1")
    return (resolution, short) if h >= w else (short, resolution)


def aspect_of(height: int, width: int) -> str:
    """The aspect of an image array's frame: (64, 48) -> ``"3:4"``."""
    k = gcd(width, height)
    return f"{width // k}:{height // k}"
