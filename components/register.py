"""register: the evaluated generator -> an MLflow model version; promoted to champion only if better.

Outputs: ``decision`` (markdown for the KFP UI) and the returned ``registration`` (register.json as JSON text).
Output names must differ: on a clash the KFP compiler renames the returned value (``decision_2``) while the
executor writes the function's name, and a real backend's launcher then fails the task
(tests/test_component_outputs.py)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output
from kfp.dsl.python_component import PythonComponent


def register(
    params: str,
    dataset_version: str,
    generator: Input[Model],
    evaluation: Input[Artifact],
    prepared: Input[Dataset],
    decision: Output[Markdown],
) -> NamedTuple("RegisterOutputs", [("registration", str)]):
    """``productgan register --generator G --metrics EVAL/metrics.json --data PREPARED`` (the promotion rule
    lives in the register step; this component only runs it and reports what it decided)."""
    import json
    import os
    from collections import namedtuple

    from components.runtime import require_tracking_uri, run_step, step_workdir

    require_tracking_uri("register")
    metrics_file = os.path.join(evaluation.path, "metrics.json")
    with step_workdir(params, dataset_version) as work:
        run_step("register", ["--generator", generator.path, "--metrics", metrics_file, "--data", prepared.path], work)
        # metrics/register.json is written relative to the step's working directory (as under `dvc repro`).
        result_path = os.path.join(work, "metrics", "register.json")
        result = {}
        if os.path.isfile(result_path):
            with open(result_path, encoding="utf-8") as fh:
                result = json.load(fh)
    body = json.dumps(result, indent=2, sort_keys=True) if result else "(the register step wrote no register.json)"
    with open(decision.path, "w", encoding="utf-8") as fh:
        fh.write(f"# productgan registration\n\nDataset version `{dataset_version}`.\n\n```json\n{body}\n```\n")
    return namedtuple("RegisterOutputs", ["registration"])(json.dumps(result, sort_keys=True))


def component(image: str) -> PythonComponent:
    return dsl.component(register, base_image=image, install_kfp_package=False)
