"""Settings: each step's dataclass holds every default and every check; params.yaml holds what a user sets.

A section's effective settings are layers, each over the one before: the dataclass's defaults, a preset row
(a dataclass may name a table of them: ``PRESETS``, chosen by its field ``PRESET_KEY``, as ``train`` chooses a
recipe), the params file, then overrides (command-line options; None = unset). ``resolve`` returns the
settings and where each value came from (``productgan params show``). Nested dataclasses merge key by key, so
a file that states one nested key keeps the other defaults.

Checks live in the dataclass's ``__post_init__`` (``require``), so no object of it is ever invalid; a failed
check, a wrong type and an unknown key all raise ParamsError naming the file, the dotted key, where the value
came from and the fix.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PARAMS_ENV = "PRODUCTGAN_PARAMS"
DEFAULT = "default"
OVERRIDE = "override"
# The library's sections: name -> "module:Dataclass" (imported when used; pipelines/settings.py holds
# `pipeline`, the orchestrator's own section, which the core never imports).
SECTIONS: dict[str, str] = {
    "ingest": "productgan.data.ingest:IngestParams",
    "preprocess": "productgan.data.preprocess:PreprocessParams",
    "train": "productgan.gan.recipes:TrainParams",
    "evaluate": "productgan.metrics.evaluate:EvaluateParams",
    "register": "productgan.registry.config:RegisterConfig",
    "generate": "productgan.serve.api:GenerateParams",
    "studio": "productgan.serve.studio.settings:StudioParams",
    "project": "productgan.serve.project:ProjectParams",
}


class ParamsError(ValueError):
    """A setting a step cannot use; the message names the file, key and fix. ``key``: the dotted field a
    dataclass's check refused (before the loader locates it); ``at``: the located key (``file:section.key``)."""

    def __init__(self, message: str, key: str | None = None, at: str | None = None) -> None:
        super().__init__(message)
        self.key, self.at = key, at


def require(ok: bool, key: str, problem: str) -> None:
    """The one way a settings dataclass checks a value (in ``__post_init__``): ``key`` is the field (dotted
    for a nested one), ``problem`` what is wrong and what is allowed."""
    if not ok:
        raise ParamsError(f"{key}: {problem}", key)


def section_class(name: str) -> type:
    module, attr = SECTIONS[name].split(":")
    return getattr(importlib.import_module(module), attr)


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


# --------------------------------------------------------------------------------------------- types


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


FIX = "fix it in params.yaml"


def _wrong(where: str, expected: str, value: Any) -> ParamsError:
    return ParamsError(f"{where}: expected {expected}, got {value!r} ({type(value).__name__}); {FIX}", at=where)


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


def from_dict(cls: type[T], data: dict[str, Any], where: str = "params") -> T:
    """Build dataclass ``cls`` from ``data`` (missing keys keep their defaults); unknown keys, wrong types and
    failed checks raise ParamsError located at ``where``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if not isinstance(data, dict):
        raise _wrong(where, f"a mapping with keys {', '.join(fields)}", data)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(
            f"{where}: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; known keys are "
            f"{', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ParamsError as exc:
        if exc.key is None:
            raise
        raise ParamsError(f"{where}.{exc}; {FIX}", at=f"{where}.{exc.key}") from None


# ------------------------------------------------------------------------------------------- layers


@dataclasses.dataclass
class Resolved:
    """A section's effective settings (``settings``, a dataclass) and the source of each dotted key."""

    settings: Any
    sources: dict[str, str]

    def values(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)


def _leaves(cls: type, prefix: str = "") -> list[str]:
    """Every setting of ``cls`` as a dotted key (a nested dataclass's settings under its field's name)."""
    out = []
    for name, hint in typing.get_type_hints(cls).items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            out += _leaves(hint, f"{prefix}{name}.") if dataclasses.is_dataclass(hint) else [f"{prefix}{name}"]
    return out


def _merge(values: dict[str, Any], sources: dict[str, str], cls: type, layer: dict[str, Any], label: str,
           prefix: str = "") -> None:
    """Lay ``layer`` over ``values`` (``cls``'s fields as a dict), recording ``label`` as the source of each
    setting it states; a nested dataclass merges key by key. Unknown keys stay for ``from_dict`` to refuse."""
    hints = typing.get_type_hints(cls)
    for key, value in layer.items():
        hint, current = hints.get(key), values.get(key)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict) and isinstance(current, dict):
            _merge(current, sources, hint, value, label, f"{prefix}{key}.")
            continue
        values[key] = value
        for dotted in sources:
            if dotted == f"{prefix}{key}" or dotted.startswith(f"{prefix}{key}."):
                sources[dotted] = label


def resolve(
    name: str,
    cls: type[T],
    section: Any = None,
    overrides: dict[str, Any] | None = None,
    where: str = "params.yaml",
) -> Resolved:
    """Section ``name``'s effective settings: ``cls``'s defaults, its preset row, ``section`` (what the params
    file ``where`` states for it) and ``overrides`` (None = unset), each over the one before."""
    located = f"{where}:{name}"
    if section is not None and not isinstance(section, dict):
        raise _wrong(located, "a mapping of settings", section)
    stated = dict(section or {})
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    values = dataclasses.asdict(cls())  # type: ignore[call-arg]
    sources = dict.fromkeys(_leaves(cls), DEFAULT)
    presets: dict[str, dict[str, Any]] | None = getattr(cls, "PRESETS", None)
    if presets is not None:
        key = cls.PRESET_KEY  # type: ignore[attr-defined]
        chosen = given.get(key, stated.get(key, values[key]))
        if isinstance(chosen, str):  # another type is for from_dict to refuse
            if chosen not in presets:
                fix = "fix the command-line option" if key in given else FIX
                raise ParamsError(f"{located}.{key}: unknown {key} {chosen!r}; use one of {', '.join(presets)}; "
                                  f"{fix}", at=f"{located}.{key}")
            _merge(values, sources, cls, presets[chosen], f"{key} {chosen}")
    _merge(values, sources, cls, stated, where)
    _merge(values, sources, cls, given, OVERRIDE)
    try:
        return Resolved(from_dict(cls, values, located), sources)
    except ParamsError as exc:
        key = (exc.at or "").removeprefix(f"{located}.")
        if sources.get(key) == OVERRIDE:  # a command-line option, not the file, holds the value
            raise ParamsError(str(exc).replace(FIX, "fix the command-line option"), at=exc.at) from None
        raise


def load_section(
    name: str,
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> T:
    """Section ``name`` of the params file in use (``path`` / $PRODUCTGAN_PARAMS / ./params.yaml) as ``cls``;
    ``overrides`` (CLI options, None = unset) win."""
    p = params_path(path)
    return resolve(name, cls, load_params(p).get(name), overrides, str(p)).settings


def section_of(doc: dict[str, Any], name: str, cls: type[T], where: str = "params") -> T:
    """Section ``name`` of a whole params mapping ``doc`` (a pipeline's ``params``) as ``cls``."""
    return resolve(name, cls, doc.get(name), None, where).settings


def effective(
    doc: dict[str, Any], where: str = "params.yaml", overrides: dict[str, dict[str, Any]] | None = None,
    names: typing.Iterable[str] | None = None,
) -> dict[str, Resolved]:
    """Every library section (or ``names``) of ``doc`` resolved; ``overrides`` per section. A section of
    ``doc`` that the library does not know (``pipeline``: the orchestrator's) is left out."""
    return {name: resolve(name, section_class(name), doc.get(name), (overrides or {}).get(name), where)
            for name in (names or SECTIONS)}


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
