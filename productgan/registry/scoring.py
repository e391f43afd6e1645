"""Scores for promotion: champion and challenger measured in the same step, on the same data, by the same code.

A scorer is any callable ``score(generator_dir, data_dir) -> {metric: value}`` (values that are not numbers,
e.g. nested per-category tables, are ignored). Tests pass a deterministic fake; the default calls the
evaluation library (``productgan.metrics.evaluate.evaluate_folder``), imported only when used.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

Scorer = Callable[[Path, Path], dict[str, float]]


def default_scorer(generator_dir: Path, data_dir: Path) -> dict[str, Any]:
    """The evaluation step's own scoring (``evaluate`` section of params.yaml: same extractors, same n, same
    real-statistics cache) of one generator folder on a prepared folder, limited to the metrics the promotion
    rule reads (``scoring_params``): fd_domain costs seconds, while re-scoring champion and challenger with
    the Inception metrics would cost minutes on a CPU unless the primary metric is one of them."""
    from productgan.metrics.evaluate import evaluate_folder, evaluation_params
    from productgan.registry.config import load_register_config

    return evaluate_folder(generator_dir, data_dir, scoring_params(evaluation_params(), load_register_config()))[0]


def scoring_params(params: Any, cfg: Any) -> Any:
    """``params`` (EvaluateParams) computing only the metrics that give ``cfg``'s primary and class-accuracy
    metrics (RegisterConfig), at the sample count a metric's name says (``fid2k``: 2,000 a side on any device)."""
    import dataclasses

    from productgan.metrics.catalog import metrics_providing, sample_count

    keys = [cfg.primary_metric, cfg.class_accuracy_metric]
    counts = [n for n in map(sample_count, keys) if n is not None]
    return dataclasses.replace(params, metrics=metrics_providing(keys), **({"fid_n": counts[0]} if counts else {}))


def is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def version_generator_dir(model_name: str, version: str, dst: str | Path | None = None) -> Path:
    """Download only the generator folder (the pyfunc artifact ``generator``) of a registered version."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    dst = Path(dst or tempfile.mkdtemp(prefix=f"productgan-{model_name}-v{version}-"))
    dst.mkdir(parents=True, exist_ok=True)
    repo = get_artifact_repository(f"models:/{model_name}/{version}")
    with open(repo.download_artifacts("MLmodel", str(dst)), encoding="utf-8") as fh:
        mlmodel = yaml.safe_load(fh)
    artifacts = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    if "generator" not in artifacts:
        raise FileNotFoundError(
            f"register: version {version} of {model_name!r} has no 'generator' artifact in its MLmodel; "
            "it was not logged by `productgan register`"
        )
    return Path(repo.download_artifacts(artifacts["generator"]["path"], str(dst)))
