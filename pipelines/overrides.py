"""``--param section.key=value`` overrides of params.yaml, shared by compile, run-local and submit."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

import yaml

_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class OverrideError(ValueError):
    pass


def parse_assignment(text: str) -> tuple[str, str]:
    """``"train.steps=200"`` -> ``("train.steps", "200")``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise OverrideError(f"--param {text!r}: expected KEY=VALUE, e.g. train.steps=200 or dataset_version=abc.dir")
    return key, raw


def yaml_value(key: str, raw: str) -> Any:
    """A params.yaml value from text, typed as YAML types it (``200``, ``true``, ``1e-4``, ``null``, ``[1, 2]``)."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise OverrideError(f"--param {key}={raw}: value is not valid YAML ({exc})") from exc
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)  # PyYAML (YAML 1.1) reads 1e-4 as text; everyone means the number
    return value


def typed_argument(key: str, raw: str, kind: str) -> Any:
    """A pipeline argument from text, typed by the pipeline's declared parameter type."""
    if kind == "STRING":
        return raw
    value = yaml_value(key, raw)
    if kind == "BOOLEAN" and isinstance(value, bool):
        return value
    if kind == "NUMBER_INTEGER" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "NUMBER_DOUBLE" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise OverrideError(f"--param {key}={raw}: pipeline parameter {key} expects {kind.lower()}")


def apply_overrides(params: dict[str, Any], assignments: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A copy of ``params`` with each dotted ``section.key[.sub]`` set (sections are created when absent)."""
    out = copy.deepcopy(params)
    for dotted, value in assignments:
        *parents, leaf = dotted.split(".")
        if not parents:
            raise OverrideError(f"--param {dotted}: a params.yaml override needs SECTION.KEY, e.g. train.steps")
        node = out
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise OverrideError(f"--param {dotted}: {'.'.join(parents[: i + 1])} is not a section")
            node = child
        node[leaf] = value
    return out


def split_params(
    assignments: Iterable[str], pipeline_inputs: dict[str, str]
) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Split ``--param`` strings into params.yaml overrides (dotted keys) and pipeline arguments (plain names).

    ``pipeline_inputs`` maps each pipeline parameter to its IR type (STRING, BOOLEAN, NUMBER_INTEGER, ...).
    """
    overrides: list[tuple[str, Any]] = []
    arguments: dict[str, Any] = {}
    for text in assignments:
        key, raw = parse_assignment(text)
        if "." in key:
            overrides.append((key, yaml_value(key, raw)))
        elif key in pipeline_inputs:
            arguments[key] = typed_argument(key, raw, pipeline_inputs[key])
        else:
            raise OverrideError(
                f"--param {text!r}: {key!r} is neither a pipeline parameter ({', '.join(sorted(pipeline_inputs))}) "
                "nor a params.yaml key (SECTION.KEY, e.g. train.steps=200)"
            )
    return overrides, arguments
