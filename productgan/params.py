"""params.yaml as typed dataclasses.

Every step owns a dataclass whose defaults equal the shipped ``params.yaml`` (a test keeps the two in step);
``load_section`` fills it from the file, so a step also runs where no params.yaml exists (a container).
Unknown keys are rejected with the file and the key named, never silently ignored.

A field may state only its differences from another field of the same section (field metadata
``{"base": "<field>"}``, as the ``train`` recipes do): its value is the base's, then its own typed
differences (its dataclass's defaults that differ from the base dataclass's), then what the file states.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PARAMS_ENV = "PRODUCTGAN_PARAMS"


class ParamsError(ValueError):
    """params.yaml holds something a step cannot use; the message names the file, key and fix."""


def params_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The params file in use: the argument, else ``$PRODUCTGAN_PARAMS``, else ``./params.yaml``."""
    return Path(path or os.environ.get(PARAMS_ENV) or "params.yaml")


def load_params(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The whole params file as a dict; an empty dict when the file does not exist."""
    p = params_path(path)
    if not p.is_file():
        return {}
    with open(p, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    if not isinstance(doc, dict):
        raise ParamsError(f"{p}: expected a mapping of sections at the top level, got {type(doc).__name__}")
    return doc


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _wrong(where: str, expected: str, value: Any) -> ParamsError:
    return ParamsError(f"{where}: expected {expected}, got {value!r} ({type(value).__name__}); fix it in params.yaml")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the field type ``hint`` (ints widen to floats; bools are not numbers)."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            keys = ", ".join(f.name for f in dataclasses.fields(hint))
            raise _wrong(where, f"a mapping with keys {keys}", value)
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        for arg in args:
            try:
                return _coerce(value, arg, where)
            except ParamsError:
                continue
        raise _wrong(where, " or ".join([*map(_type_name, args), "null"]), value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(where, "float", value)
        return float(value)
    if hint in (int, bool, str):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise _wrong(where, hint.__name__, value)
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _wrong(where, f"a list ({_type_name(hint)})", value)
        (inner, *_) = typing.get_args(hint) or (Any,)
        return type(value)(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, f"a mapping ({_type_name(hint)})", value)
        _, inner = typing.get_args(hint) or (Any, Any)
        return {k: _coerce(v, inner, f"{where}.{k}") for k, v in value.items()}
    return value


def with_bases(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a section of ``cls``) with each field that names a base merged onto that base (see above)."""
    out = dict(data)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        base = f.metadata.get("base")
        own, inherited = data.get(f.name), data.get(base) if base else None
        if base is None or not all(v is None or isinstance(v, dict) for v in (own, inherited)):
            continue  # a value of the wrong type is for from_dict to reject
        if own is None and inherited is None:
            continue
        base_defaults = dataclasses.asdict(hints[base]())
        typed = {k: v for k, v in dataclasses.asdict(hints[f.name]()).items() if base_defaults.get(k) != v}
        out[f.name] = {**(inherited or {}), **typed, **(own or {})}
    return out


def from_dict(cls: type[T], data: dict[str, Any], where: str = "params") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong scalar types raise ParamsError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if not isinstance(data, dict):
        raise _wrong(where, f"a mapping with keys {', '.join(fields)}", data)
    data = with_bases(cls, data)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(
            f"{where}: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; known keys are "
            f"{', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def load_section(
    name: str,
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> T:
    """Section ``name`` of params.yaml as ``cls``; ``overrides`` (CLI options, None = unset) win."""
    p = params_path(path)
    raw = load_params(p).get(name)
    if raw is not None and not isinstance(raw, dict):
        raise _wrong(f"{p}:{name}", "a mapping of settings", raw)
    section = dict(raw or {})
    section.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(cls, section, f"{p}:{name}")


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
