"""MLflow side of the evaluate step: log the metrics onto the training run (found in ``<generator>/run.json``,
or as the run behind a ``runs:/`` or ``models:/`` URI)."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from productgan.io import read_json
from productgan.metrics.flatten import flatten_numbers
from productgan.redact import MASK, redact

log = logging.getLogger(__name__)

METRIC_PREFIX = "eval/"


def training_run(generator_dir: str | os.PathLike[str], uri: str | None = None) -> tuple[str, str | None] | None:
    """(run_id, tracking_uri or None) of the run that trained the generator, or None when unknown."""
    run_file = Path(generator_dir) / "run.json"
    if run_file.is_file():
        info = read_json(run_file)
        if info.get("run_id"):
            recorded = info.get("tracking_uri")
            # run.json records the URI redacted (``http://***@host``): the credentials come from the environment
            # (MLFLOW_TRACKING_USERNAME/PASSWORD), never from a file
            if recorded and f"{MASK}@" in recorded:
                recorded = recorded.replace(f"{MASK}@", "", 1)
            return str(info["run_id"]), recorded
    if uri and uri.startswith("runs:/"):
        return uri[len("runs:/") :].split("/", 1)[0], None
    if uri and uri.startswith("models:/"):
        import mlflow.models

        try:
            run_id = mlflow.models.get_model_info(uri).run_id
        except Exception as exc:  # lineage is optional; the metrics are still written
            log.warning("evaluate: cannot read the run behind %s (%s)", redact(uri), redact(exc))
            return None
        return (run_id, None) if run_id else None
    return None


def _metric_name(*parts: str) -> str:
    return METRIC_PREFIX + "/".join(re.sub(r"[^A-Za-z0-9_\-. ]", "_", p) for p in parts)


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of an evaluation as flat MLflow metric names (``eval/fd_domain``,
    ``eval/class_accuracy/Trouser``, ``eval/domain_classifier_test_accuracy`` ...)."""
    numbers = {k: v for k, v in result.items() if k not in ("meta", "fid_meta", "domain_classifier")}
    test_accuracy = (result.get("domain_classifier") or {}).get("test_accuracy")
    if isinstance(test_accuracy, int | float):
        numbers["domain_classifier_test_accuracy"] = test_accuracy
    return flatten_numbers(
        numbers, name=lambda path: _metric_name(path[0].removesuffix("_per_category"), *path[1:]), finite=False,
        bools=True,
    )


def log_to_training_run(
    result: dict[str, Any],
    generator_dir: str | os.PathLike[str],
    uri: str | None = None,
    artifacts: list[Path] | None = None,
) -> str | None:
    """Log ``result`` as metrics (and ``artifacts`` under ``eval/``) on the training run; returns the run id,
    or None with a warning when the run is unknown or unreachable (the step does not fail for that)."""
    run = training_run(generator_dir, uri)
    if run is None:
        log.warning(
            "evaluate: no run.json in %s and no run behind the URI; metrics not logged to MLflow", generator_dir
        )
        return None
    run_id, run_uri = run
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        # the environment's tracking server wins over the one recorded at training time (moved machines)
        client = MlflowClient(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or run_uri)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in sorted(flat_metrics(result).items())]
        for i in range(0, len(metrics), 1000):  # MLflow's log_batch limit
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        for path in artifacts or []:
            client.log_artifact(run_id, str(path), "eval")
    except Exception as exc:  # a tracking outage must not lose the metrics file
        log.warning(
            "evaluate: could not log metrics to MLflow run %s (%s); metrics.json is written anyway", run_id,
            redact(exc),
        )
        return None
    return run_id
