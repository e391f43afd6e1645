"""retrain-check: has anything changed since a model was last trained? If not, the run ends early.

The decision itself is ``components.retrain.retrain_decision``; this module is the KFP component around it.
"""

from kfp import dsl
from kfp.dsl import Markdown, Output
from kfp.dsl.python_component import PythonComponent


def retrain_check(params: str, dataset_version: str, force: bool, summary: Output[Markdown]) -> bool:
    """Compare this run's dataset version, code version and params with the registered model versions.

    Returns whether to train (a single, unnamed output: kfp.local resolves conditions only on ``Output``);
    the reason is in the markdown summary and its metadata."""
    from components.retrain import model_name, retrain_decision
    from components.runtime import parse_params, require_tracking_uri
    from productgan.lineage import git_commit, model_code_version, model_params_hash
    from productgan.redact import redact

    tracking_uri = require_tracking_uri("retrain-check")
    doc = parse_params(params)
    name, code, phash = model_name(doc), model_code_version(), model_params_hash(doc)
    decision = retrain_decision(name, dataset_version, code, phash, force=force)

    verdict = "**Retrain**: preprocess, train, evaluate, register run." if decision.retrain else (
        "**Nothing to do**: the run ends here; preprocess, train, evaluate and register are skipped."
    )
    text = (
        "# productgan retraining check\n\n"
        f"{verdict}\n\n{decision.reason}\n\n"
        f"| | this run |\n|---|---|\n| model | `{name}` |\n| dataset version | `{dataset_version}` |\n"
        f"| model code version | `{code}` |\n| git commit | `{git_commit()}` |\n| params hash | `{phash}` |\n"
        f"| MLflow | `{redact(tracking_uri)}` |\n"
    )
    with open(summary.path, "w", encoding="utf-8") as fh:
        fh.write(text)
    summary.metadata.update({"retrain": decision.retrain, "reason": decision.reason})
    print(f">> retrain-check: {'RETRAIN' if decision.retrain else 'SKIP'}: {decision.reason}", flush=True)
    return decision.retrain


def component(image: str) -> PythonComponent:
    return dsl.component(retrain_check, base_image=image, install_kfp_package=False)
