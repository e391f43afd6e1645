"""The typed pipeline parameters: the settings people change from run to run, one KFP parameter each.

The whole params.yaml still travels as the ``params`` parameter (its default is the file at compile time);
these few keys also get a parameter of their own, typed, so the KFP UI shows them in the run form, on each
run's page and in run comparison. Their defaults are the effective values of ``params`` (stated there, else
the step's default); a value given for a run wins over the same key inside ``params``. The ``run-settings``
step applies them and hands every other step the resulting params.yaml.

No kfp import: the run-settings component's body imports this module inside its pod.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipelines.overrides import apply_overrides
from productgan.params import section_class, section_of

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
    """The effective value of ``section.key`` in ``params`` (its default where ``params`` does not state it)."""
    section, key = dotted.split(".")
    return getattr(section_of(dict(params), section, section_class(section)), key)


def run_parameter_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """Each typed parameter's effective value in ``params`` (its default in the compiled pipeline); the steps'
    dataclasses check the types."""
    out: dict[str, Any] = {}
    for name, (dotted, _) in RUN_PARAMETERS.items():
        value = _get(params, dotted)
        out[name] = NO_BUDGET if name == "max_minutes" and value is None else value
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
