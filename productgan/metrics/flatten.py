"""The one flattener of nested metric documents (metrics.json, train.json) into ``{name: number}``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any


def flatten_numbers(
    doc: Mapping[str, Any],
    name: Callable[[tuple[str, ...]], str] = ".".join,
    finite: bool = True,
    bools: bool = False,
) -> dict[str, float]:
    """The numbers of a nested mapping keyed by ``name(path)`` (``{"kid": {"mean": 1}}`` -> ``{"kid.mean": 1.0}``).

    Text, lists and None are left out; so are booleans unless ``bools`` (then 1.0 / 0.0) and non-finite numbers
    while ``finite`` (the register step keeps them: a NaN primary metric marks a diverged generator)."""
    out: dict[str, float] = {}

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(inner, (*path, str(key)))
        elif isinstance(value, bool):
            if bools:
                out[name(path)] = float(value)
        elif isinstance(value, int | float) and (not finite or math.isfinite(value)):
            out[name(path)] = float(value)

    walk(doc, ())
    return out
