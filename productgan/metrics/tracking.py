"""MLflow side of the evaluate step: log the metrics onto the training run (found in ``<generator>/run.json``,
or as the run behind a ``runs:/`` or ``models:/`` URI), with train's guarantee through an outage
(``productgan.tracking``)."""

from __future__ import annotations

import logging
import os
import re
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
    artifacts_dir: Path | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[str | None, str | None]:
    """Log ``result`` as metrics (and the files of ``artifacts_dir`` under ``eval/``) on the training run, through
    ``productgan.tracking``: a tracking server that is down keeps them (``step_pending_root(cache_dir)``) for
    ``productgan sync-run``. Returns (the run id or None when the run is unknown, what MLflow still lacks or
    None)."""
    from productgan.tracking import Tracker, step_pending_root

    run = training_run(generator_dir, uri)
    if run is None:
        log.warning(
            "evaluate: no run.json in %s and no run behind the URI; metrics not logged to MLflow", generator_dir
        )
        return None, None
    run_id, run_uri = run
    tracker = Tracker(pending_root=step_pending_root(cache_dir), say=lambda m: log.warning("evaluate: %s", m))
    # the environment's tracking server wins over the one recorded at training time (moved machines)
    tracker.attach(run_id, {"step": "evaluate"}, uri=os.environ.get("MLFLOW_TRACKING_URI") or run_uri)
    tracker.log_metrics(flat_metrics(result), step=0)
    if artifacts_dir is not None:
        tracker.log_artifacts(str(artifacts_dir), "eval")
    return run_id, tracker.close()
