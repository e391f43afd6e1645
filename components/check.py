"""retrain-check: has anything changed since a model was last trained? If not, the run ends early.

A run trains only when the (dataset version, code version, params hash) triple is new: no registered model
version carries it yet. Comparing with every version, not only the champion, matters: a model trained on new
data that lost to the champion stays a non-promoted version, and the next scheduled run must not train the
very same thing again.
"""

import dataclasses
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Markdown, Output
from kfp.dsl.python_component import PythonComponent

# Model version tags the register step sets (the lineage of the generator it registers).
LINEAGE_TAGS = ("dataset_version", "git_commit", "params_hash")
DEFAULT_MODEL_NAME = "product-gan"


@dataclasses.dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str
    matching_version: str | None = None  # the registered version trained from exactly this triple


def model_name(params: dict) -> str:
    register = params.get("register") or {}
    return str(register.get("model_name") or DEFAULT_MODEL_NAME)


def retrain_decision(
    name: str, dataset_version: str | None, git_commit: str | None, params_hash: str, force: bool = False
) -> Decision:
    """Decide against the MLflow registry at ``MLFLOW_TRACKING_URI`` whether this run must train."""
    if force:
        return Decision(True, "forced (force=true)")
    if not dataset_version or not git_commit:
        missing = "dataset version" if not dataset_version else "code version (git commit)"
        return Decision(True, f"{missing} unknown, so an unchanged run cannot be proven")
    if git_commit.endswith("-dirty"):
        return Decision(True, f"code {git_commit} has uncommitted changes, so it is not identified by its commit")

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            versions = []
        else:
            raise
    if not versions:
        return Decision(True, f"no version of model {name!r} is registered yet")

    current = {"dataset_version": dataset_version, "git_commit": git_commit, "params_hash": params_hash}
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if all(mv.tags.get(k) == current[k] for k in LINEAGE_TAGS):
            aliases = ", ".join(getattr(mv, "aliases", None) or []) or "no alias: it did not beat the champion"
            return Decision(
                False,
                f"nothing new: version {mv.version} of {name!r} ({aliases}) was trained from this dataset "
                f"version, code and params",
                str(mv.version),
            )

    latest = max(versions, key=lambda v: int(v.version))
    try:
        reference = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        reference = latest
    changed = [
        f"{k} {reference.tags.get(k) or '(not recorded)'} -> {current[k]}"
        for k in LINEAGE_TAGS
        if reference.tags.get(k) != current[k]
    ]
    return Decision(True, f"changed since version {reference.version}: " + "; ".join(changed))


def retrain_check(params: str, dataset_version: str, force: bool, summary: Output[Markdown]) -> NamedTuple(
    "CheckOutputs", [("retrain", bool), ("reason", str)]
):
    """Compare this run's dataset version, code version and params with the registered model versions."""
    from collections import namedtuple

    from components.check import model_name, retrain_decision
    from components.runtime import parse_params, require_tracking_uri
    from productgan.lineage import git_commit, params_hash

    tracking_uri = require_tracking_uri("retrain-check")
    doc = parse_params(params)
    name, code, phash = model_name(doc), git_commit(), params_hash(doc)
    decision = retrain_decision(name, dataset_version, code, phash, force=force)

    verdict = "**Retrain**: preprocess, train, evaluate, register run." if decision.retrain else (
        "**Nothing to do**: the run ends here; preprocess, train, evaluate and register are skipped."
    )
    text = (
        "# productgan retraining check\n\n"
        f"{verdict}\n\n{decision.reason}\n\n"
        f"| | this run |\n|---|---|\n| model | `{name}` |\n| dataset version | `{dataset_version}` |\n"
        f"| code (git commit) | `{code}` |\n| params hash | `{phash}` |\n| MLflow | `{tracking_uri}` |\n"
    )
    with open(summary.path, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f">> retrain-check: {'RETRAIN' if decision.retrain else 'SKIP'}: {decision.reason}", flush=True)
    return namedtuple("CheckOutputs", ["retrain", "reason"])(decision.retrain, decision.reason)


def component(image: str) -> PythonComponent:
    return dsl.component(retrain_check, base_image=image, install_kfp_package=False)
