"""What an edit request may ask: the ``Edits`` fields (the one list of edits: the CLI options of
generate/interpolate/edit and the served model's request columns are made from them), their parsing from a
request row or CLI options, and their validation. Light on purpose (no numpy): `productgan --help` builds the
edit options from it. The edits themselves are in ``edit.py``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from PIL import ImageColor

MAX_SIZE = 4096  # largest output side; bigger asks are refused (memory)
BACKGROUNDS = ("white", "transparent")


class EditError(ValueError):
    """An edit that cannot be done as asked; the message says which value and what is allowed."""


def _edit(help: str, default: Any = None, **more: Any) -> Any:
    """An edit field; ``help`` is its one-line description (the CLI option's help), ``more`` e.g. ``choices``."""
    return dataclasses.field(default=default, metadata={"help": help, **more})


@dataclass(frozen=True)
class Edits:
    """What to change; None / False means leave it as it is.

    color: target colour of the product (``#rgb``, ``#rrggbb`` or a CSS name): hue and saturation are
        set to the target's and the product's mean luminance moved to the target's, shading kept.
    hue_shift: degrees added to the product's hue (after ``color``).
    saturation, brightness: factors (1 = unchanged, 0 = grey / black) for the product only.
    scale: product size factor within the same canvas, about the product's centre.
    rotate: degrees counter-clockwise about the product's centre. flip: mirror left-right.
    size: output resolution: the longer side in pixels, aspect kept, Lanczos resampling.
    background: ``white`` (composite on white) or ``transparent`` (RGBA, alpha = product mask).
    """

    color: str | None = _edit("Recolour the product, keeping its shading: '#aa3355', '#a35' or a CSS name.")
    hue_shift: float | None = _edit("Degrees added to the product's hue.")
    saturation: float | None = _edit("Saturation factor for the product (1 = unchanged, 0 = grey).")
    brightness: float | None = _edit("Brightness factor for the product (1 = unchanged).")
    scale: float | None = _edit("Product size within the same canvas, e.g. 0.8.")
    rotate: float | None = _edit("Degrees counter-clockwise about the product's centre.")
    flip: bool = _edit("Mirror left-right.", default=False)
    size: int | None = _edit("Output resolution: the longer side in pixels (Lanczos).")
    background: str | None = _edit("Replace the background.", choices=BACKGROUNDS)

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def fields(cls) -> list[tuple[str, type, dict[str, Any]]]:
        """(name, type, metadata) of each edit, in order: what the CLI and the served model build on."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
            out.append((f.name, args[0] if args else hints[f.name], dict(f.metadata)))
        return out

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Edits:
        """Edits from a request row or CLI options: missing / None / NaN values mean "no edit"."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise EditError(f"unknown edit(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        clean = {k: v for k, v in values.items() if not _missing(v)}
        try:
            for key in ("hue_shift", "saturation", "brightness", "scale", "rotate"):
                if key in clean:
                    clean[key] = float(clean[key])
            if "size" in clean:
                size = float(clean["size"])
                if not size.is_integer():
                    raise EditError(f"size={clean['size']!r} must be a whole number of pixels")
                clean["size"] = int(size)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, EditError):
                raise
            raise EditError(f"edit values must be numbers: {exc}") from None
        if "flip" in clean:
            clean["flip"] = _as_bool(clean["flip"])
        for key in ("color", "background"):
            if key in clean:
                clean[key] = str(clean[key]).strip() or None
        return cls(**clean)

    def is_empty(self) -> bool:
        return self == Edits()

    @property
    def wants_colour(self) -> bool:
        return self.color is not None or self.hue_shift is not None or self.saturation is not None


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:  # pandas NA / NaT and numpy NaN scalars
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise EditError(f"flip={value!r} is not a yes/no value; use true or false")
    return bool(value)


def validate(edits: Edits) -> None:
    """Raise EditError naming the first value that is out of range or malformed."""
    if edits.color is not None:
        parse_color(edits.color)
    for key in ("hue_shift", "saturation", "brightness", "scale", "rotate"):
        value = getattr(edits, key)
        if value is not None and not math.isfinite(value):
            raise EditError(f"{key}={value!r} must be a finite number")
    if edits.saturation is not None and not 0 <= edits.saturation <= 10:
        raise EditError(f"saturation={edits.saturation} is out of range; use a factor in 0..10 (1 = unchanged)")
    if edits.brightness is not None and not 0 <= edits.brightness <= 10:
        raise EditError(f"brightness={edits.brightness} is out of range; use a factor in 0..10 (1 = unchanged)")
    if edits.scale is not None and not 0.05 <= edits.scale <= 10:
        raise EditError(f"scale={edits.scale} is out of range; use a factor in 0.05..10 (1 = unchanged)")
    if edits.size is not None and not 1 <= edits.size <= MAX_SIZE:
        raise EditError(f"size={edits.size} is out of range; use 1..{MAX_SIZE} pixels")
    if edits.background is not None and edits.background not in BACKGROUNDS:
        raise EditError(f"background={edits.background!r} is not known; use one of {', '.join(BACKGROUNDS)}")


def parse_color(text: str) -> tuple[int, int, int]:
    """``#rgb``, ``#rrggbb``, ``rgb(…)`` or a CSS colour name -> (r, g, b); EditError when malformed."""
    try:
        rgb = ImageColor.getrgb(str(text).strip())
    except (ValueError, AttributeError):
        raise EditError(
            f"color={text!r} is not a colour; use #rgb, #rrggbb (e.g. '#aa3355') or a CSS name (e.g. 'navy')"
        ) from None
    return int(rgb[0]), int(rgb[1]), int(rgb[2])
