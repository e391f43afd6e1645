"""The retraining decision: has this (dataset version, model code version, params) triple been trained already?

A run trains only when the triple is new: no registered model version whose promotion was decided carries it
yet (a version register left undecided, e.g. in a tracking-server outage, does not count). Comparing with every
version, not only the champion, matters: a model trained on new data that lost to the champion stays a
non-promoted version, and the next scheduled run must not train the very same thing again.

Runs inside the pod (imported by the retrain-check component's body), so no kfp import here: the KFP
executor's partial import of kfp.dsl makes component modules unimportable at run time.
"""

from __future__ import annotations

import dataclasses

# Model version tags the register step sets (the lineage of the generator it registers). The code is the model
# code's version (productgan.lineage.model_code_version: what training imports, comments aside), not the git
# commit: a commit that changes only the README, the serving code or a comment trains nothing.
LINEAGE_TAGS = ("dataset_version", "code_version", "params_hash")
# Set last by register on a version whose promotion was decided (productgan.registry.promote); a version
# without it was left half-done (e.g. by a tracking-server outage) and does not count as trained.
DECISION_TAG = "promotion.decision"


@dataclasses.dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str
    matching_version: str | None = None  # the registered version trained from exactly this triple


def model_name(params: dict) -> str:
    """The registered model's name: ``register.model_name`` of ``params``, or its default."""
    from productgan.params import section_of
    from productgan.registry.config import RegisterConfig

    return section_of(params, "register", RegisterConfig).model_name


def retrain_decision(
    name: str, dataset_version: str | None, code_version: str, params_hash: str, force: bool = False
) -> RetrainDecision:
    """Decide against the MLflow registry at ``MLFLOW_TRACKING_URI`` whether this run must train."""
    if force:
        return RetrainDecision(True, "forced (force=true)")
    if not dataset_version:
        return RetrainDecision(True, "dataset version unknown, so an unchanged run cannot be proven")

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
        return RetrainDecision(True, f"no version of model {name!r} is registered yet")

    current = {"dataset_version": dataset_version, "code_version": code_version, "params_hash": params_hash}
    undecided = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if all(mv.tags.get(k) == current[k] for k in LINEAGE_TAGS):
            if DECISION_TAG not in mv.tags:  # register stopped before deciding (an outage): not done yet
                undecided.append(str(mv.version))
                continue
            aliases = ", ".join(getattr(mv, "aliases", None) or []) or "no alias: it did not beat the champion"
            return RetrainDecision(
                False,
                f"nothing new: version {mv.version} of {name!r} ({aliases}) was trained from this dataset "
                f"version, code and params",
                str(mv.version),
            )

    if undecided:
        return RetrainDecision(
            True, f"version {undecided[0]} of {name!r} was trained from this dataset version, code and params but "
            f"never decided (register stopped before its {DECISION_TAG} tag); training again lets register "
            "finish it (the same generator reuses that version)"
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
    return RetrainDecision(True, f"changed since version {reference.version}: " + "; ".join(changed))
