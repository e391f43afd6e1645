"""The typed pipeline parameters: the settings people change from run to run, one KFP parameter each.

The whole params.yaml still travels as the ``params`` parameter (its default is the file at compile time);
these few keys also get a parameter of their own, typed, so the KFP UI shows them in the run form, on each
run's page and in run comparison. Their defaults are the values in ``params``; a value given for a run wins
over the same key inside ``params``. The ``run-settings`` step applies them and hands every other step the
resulting params.yaml.

No kfp import: the run-settings component's body imports this module inside its pod.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipelines.overrides import apply_overrides

# pipeline parameter -> (params.yaml key, type). The pipeline function in pipelines/product_gan.py declares
# exactly these (a test keeps them in step).
RUN_PARAMETERS: dict[str, tuple[str, type]] = {
    "recipe": ("train.recipe", str),
    "steps": ("train.steps", int),
    "max_minutes": ("train.max_minutes", float),  # 0 = no time budget (params: null)
    "resolution": ("preprocess.resolution", int),
    "eval_n": ("evaluate.n", int),
}
NO_BUDGET = 0.0  # max_minutes as a KFP float cannot be null


class RunParameterError(ValueError):
    pass


def params_json(params: Mapping[str, Any]) -> str:
    """params.yaml as one-line JSON (JSON is YAML, so steps read it as is).

    One line because the KFP compiler copies parameter defaults into the IR file's header comment verbatim;
    a multi-line default there would break the YAML file."""
    return json.dumps(params, ensure_ascii=False)


def _get(params: Mapping[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise RunParameterError(
                f"params: {dotted} is missing; the pipeline parameter for it takes its default from params.yaml")
        node = node[part]
    return node


def run_parameter_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """Each typed parameter's value in ``params`` (its default in the compiled pipeline)."""
    out: dict[str, Any] = {}
    for name, (dotted, kind) in RUN_PARAMETERS.items():
        value = _get(params, dotted)
        if name == "max_minutes" and value is None:
            value = NO_BUDGET
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RunParameterError(f"params: {dotted}={value!r} must be {kind.__name__} (pipeline parameter {name})")
        out[name] = value
    return out


def apply_run_parameters(params: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with the typed parameters' values set at their keys."""
    unknown = set(values) - set(RUN_PARAMETERS)
    if unknown:
        raise RunParameterError(f"unknown run parameter(s) {sorted(unknown)}; known: {sorted(RUN_PARAMETERS)}")
    assignments = []
    for name, value in values.items():
        dotted, _ = RUN_PARAMETERS[name]
        if name == "max_minutes" and not value:
            value = None
        assignments.append((dotted, value))
    return apply_overrides(dict(params), assignments)
