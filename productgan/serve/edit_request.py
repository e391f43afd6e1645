"""What an edit request may ask: the ``Edits`` fields (image edits: the one list of them: the CLI options of
generate/interpolate/edit/project and the served model's request columns are made from them) and the
``LatentEdits`` fields (edits through the generator: category swap, interpolation, principal directions;
the same two uses), their parsing from a request row or CLI options, and their validation. Light on purpose
(no numpy): `productgan --help` builds the edit options from it. The image edits themselves are in
``edit.py``, the latent edits in ``latent.py``; latent edits come first, image edits after.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from PIL import ImageColor

MAX_SIZE = 4096  # largest output side; bigger asks are refused (memory)
MAX_STRENGTH = 20.0  # largest step along a direction, in latent units (latents are N(0, 1) per dimension)
MAX_SEED = 2**53  # seeds are exact in a double (JSON numbers, the server's request columns) up to here
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
        return _fields(cls)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Edits:
        """Edits from a request row or CLI options: missing / None / NaN values mean "no edit"."""
        clean = _given(cls, values, "edit")
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


def _given(cls: type, values: dict[str, Any], what: str) -> dict[str, Any]:
    """The values of ``values`` that ask for something (not missing / None / NaN); an unknown name is an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise EditError(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return {k: v for k, v in values.items() if not _missing(v)}


@dataclass(frozen=True)
class LatentEdits:
    """Edits through the generator, applied to the latent (a seed's or a projected photo's) before the image
    edits; None means leave it as it is.

    to_category: the same latent drawn as another category (the same style, another product).
    interpolate_to: a seed (or, on the `project` command line, a second photo): the images become a strip of
        frames from this product to that one (slerp of the latents; the category too with ``to_category``).
    direction, strength: move the latent ``strength`` units along principal direction ``direction`` of the
        generator (SeFa: eigenvectors of its first layer's weight; `productgan directions` shows each as a grid).
    """

    to_category: str | None = _edit("Draw the same latent as this category (name or index).")
    interpolate_to: str | None = _edit("A seed (with `project` also a photo): frames from this product to that one.")
    direction: int | None = _edit("Principal direction to move along (see `productgan directions`).")
    strength: float | None = _edit("How far to move along --direction, in latent units (e.g. -3 .. 3).")

    def __post_init__(self) -> None:
        validate_latent(self)

    @classmethod
    def fields(cls) -> list[tuple[str, type, dict[str, Any]]]:
        return _fields(cls)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> LatentEdits:
        """Latent edits from a request row, API keywords or CLI options (missing / None / NaN: no edit)."""
        clean = _given(cls, values, "latent edit")
        if "direction" in clean:
            clean["direction"] = whole_number(clean["direction"], "direction")
        if "strength" in clean:
            try:
                clean["strength"] = float(clean["strength"])
            except (TypeError, ValueError):
                raise EditError(f"strength={clean['strength']!r} must be a number") from None
        if "interpolate_to" in clean and not isinstance(clean["interpolate_to"], str):
            clean["interpolate_to"] = str(whole_number(clean["interpolate_to"], "interpolate_to"))
        for key in ("to_category", "interpolate_to"):
            if key in clean:
                clean[key] = str(clean[key]).strip() or None
        return cls(**clean)

    def is_empty(self) -> bool:
        return self == LatentEdits()

    def interpolate_seed(self) -> int | None:
        """``interpolate_to`` as a seed, or None when it is not a whole number (a photo, on the command line)."""
        text = self.interpolate_to
        return int(text) if text is not None and is_digits(text) else None


def validate_latent(edits: LatentEdits) -> None:
    if (edits.direction is None) != (edits.strength is None):
        raise EditError("direction and strength go together: give both (e.g. direction=0, strength=3) or neither")
    if edits.direction is not None and edits.direction < 0:
        raise EditError(f"direction={edits.direction} must be 0 or more (see `productgan directions`)")
    if edits.strength is not None and not (math.isfinite(edits.strength) and abs(edits.strength) <= MAX_STRENGTH):
        raise EditError(f"strength={edits.strength!r} is out of range; use -{MAX_STRENGTH:g}..{MAX_STRENGTH:g}")
    seed = edits.interpolate_seed()
    if seed is not None and seed > MAX_SEED:
        raise EditError(f"interpolate_to={seed} is out of range; use a seed 0..2**53")


def whole_number(value: Any, key: str) -> int:
    """``value`` (a number or its text) as an int; EditError naming ``key`` when it is not a finite whole
    number (NaN, infinities, 1e999 and ints too large for a double included)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise EditError(f"{key}={value!r} must be a whole number") from None
    if not number.is_integer():
        raise EditError(f"{key}={value!r} must be a whole number")
    return int(number)


def is_digits(text: str) -> bool:
    """Whether ``text`` is a whole number written out (a seed, an index): ASCII digits only; ``"²"`` passes
    ``str.isdigit`` but ``int()`` refuses it."""
    return text.isascii() and text.isdecimal()


def _fields(cls: type) -> list[tuple[str, type, dict[str, Any]]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        out.append((f.name, args[0] if args else hints[f.name], dict(f.metadata)))
    return out


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
