"""The register step: check the training run, log + register the generator, decide champion/challenger.

When the tracking server or its artifact store fails part-way, the step stops with a RegistrationError that
says what exists: nothing (no model version is created before its artifacts are uploaded and checked), or a
version whose promotion is not decided yet, which the same command decides when run again. The register run's
own records (its settings, the decision's summary, its end) go through ``productgan.tracking`` as train's do:
a server that stops after the decision loses none of them (``productgan sync-run`` sends what was kept).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

from productgan.redact import redact
from productgan.registry import store
from productgan.registry.config import RegisterConfig, load_register_config
from productgan.registry.log import (
    RegistrationError,
    check_training_run,
    find_registered,
    lineage_tags,
    log_and_register,
    read_metrics,
)
from productgan.registry.promote import promote_new_version
from productgan.registry.scoring import Scorer

log = logging.getLogger(__name__)


def _outage_errors() -> tuple[type[BaseException], ...]:
    """What a tracking server or artifact store that stops answering raises through MLflow's client."""
    import requests
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    # requests' errors cover the proxied artifact store; boto's a client that writes to S3 itself
    return MlflowException, requests.RequestException, BotoCoreError, ClientError, Boto3Error


def _stopped(exc: BaseException, model_name: str, version: str | None) -> RegistrationError:
    if version is None:
        state = ("Nothing was registered: no model version is created before its artifacts are uploaded and "
                 "checked. Run the same command again once the server and its artifact store answer.")
    else:
        state = (f"Version {version} of {model_name!r} is registered with complete artifacts, but its promotion "
                 f"was not decided. Run the same command again once the server answers: it reuses version "
                 f"{version} and decides it.")
    return RegistrationError(redact(f"register: stopped by the tracking server or its artifact store: {exc}. "
                                    f"{state}"))


def register_generator(
    generator_dir: str | Path,
    metrics_file: str | Path,
    *,
    data_dir: str | Path | None = None,
    cfg: RegisterConfig | None = None,
    scorer: Scorer | None = None,
    pending_root: str | Path | None = None,
) -> dict[str, Any]:
    """Register ``generator_dir`` as a new version of ``cfg.model_name`` and run the promotion rule.

    Refuses (RegistrationError) a generator whose training run FAILED, is unfinished or diverged. Registering
    the same generator from the same training run again reuses its version and its recorded decision.
    ``scorer(generator_dir, data_dir)`` re-scores champion and challenger when ``data_dir`` is given
    (default: the evaluation library). ``pending_root``: where the register run's records wait for a tracking
    server that stops (default: ``productgan.tracking.step_pending_root``). Returns the record written to
    metrics/register.json.
    """
    import mlflow

    from productgan.tracking import Tracker, step_pending_root

    cfg = cfg or load_register_config()
    generator_dir, metrics_file = Path(generator_dir), Path(metrics_file)
    data = Path(data_dir) if data_dir is not None else None
    client = store.client()  # a tracking server that does not answer is reported here, before any write
    version: str | None = None
    try:
        run = check_training_run(client, generator_dir)
        metrics = read_metrics(metrics_file, cfg.primary_metric)
        tags = lineage_tags(generator_dir, run, metrics, metrics_file)
        promote_kwargs = dict(challenger_dir=generator_dir, data_dir=data, scorer=scorer, recorded_scores=metrics)

        version = find_registered(client, cfg.model_name, tags)
        if version is not None:
            result = promote_new_version(client, cfg, version, **promote_kwargs)
            result.update(reused=True, training_run_id=run.run_id, model_uri=f"models:/{cfg.model_name}/{version}")
            return result

        run_tags = {"mlflow.parentRunId": run.run_id, "productgan.step": "register", "training_run_id": run.run_id}
        reg = mlflow.start_run(experiment_id=run.experiment_id, run_name="register", tags=run_tags)
        if pending_root is None:
            from productgan.metrics.evaluate import evaluation_params

            pending_root = step_pending_root(evaluation_params().cache_dir)
        # MLflow's own retries stay on: the model upload below needs them (a kept call loses nothing either way)
        records = Tracker(pending_root=pending_root, say=lambda m: log.warning("register: %s", m))
        records.attach(reg.info.run_id, {"step": "register"}, fail_fast=False)
        records.log_params({f"register.{k}": v for k, v in dataclasses.asdict(cfg).items()})
        try:
            version, _ = log_and_register(cfg.model_name, generator_dir, {**tags, "register_run_id": reg.info.run_id})
            result = promote_new_version(client, cfg, version, **promote_kwargs)
        except BaseException:
            _end_run(records, "FAILED")
            raise
        _summarise(records, cfg.model_name, version, result)
        _end_run(records, "FINISHED")
    except _outage_errors() as exc:
        raise _stopped(exc, cfg.model_name, version) from exc
    result.update(reused=False, training_run_id=run.run_id, register_run_id=reg.info.run_id,
                  model_uri=f"models:/{cfg.model_name}/{version}")
    missing = records.close()
    if missing:
        from productgan.tracking import SYNC_COMMAND

        result["mlflow_pending"] = {"missing": missing, "journal": str(records.journal.folder),
                                    "command": SYNC_COMMAND}
        log.warning("register: version %s is decided (%s); the register run's records (%s) are kept in %s and sent "
                    "by `%s` once the tracking server answers", version, result["decision"], missing,
                    records.journal.folder, SYNC_COMMAND)
    return result


def _summarise(records: Any, model_name: str, version: str, result: dict[str, Any]) -> None:
    """The decision as tags and metrics of the register run (a copy: the version's own tags are the record)."""
    records.set_tags({
        "model_name": model_name, "model_version": version, "promotion.decision": result["decision"],
        "promotion.reason": result["reason"], "champion_version": str(result["champion_version"]),
    })
    records.log_metrics({f"{role}.{key}": value for role, scores in result["scores"].items()
                         for key, value in (scores or {}).items() if value is not None and math.isfinite(value)}, 0)


def _end_run(records: Any, status: str) -> None:
    """End the register run (and MLflow's notion of the active run); with the server gone, the end is kept with
    the run's other records."""
    import mlflow

    try:
        mlflow.end_run(status)
    except _outage_errors():
        records.end(status)
