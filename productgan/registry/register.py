"""The register step: check the training run, log + register the generator, decide champion/challenger."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from productgan.registry import store
from productgan.registry.config import RegisterConfig, load_register_config
from productgan.registry.log import check_training_run, find_registered, lineage_tags, log_and_register, read_metrics
from productgan.registry.promote import promote_new_version
from productgan.registry.scoring import Scorer


def register_generator(
    generator_dir: str | Path,
    metrics_file: str | Path,
    *,
    data_dir: str | Path | None = None,
    cfg: RegisterConfig | None = None,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Register ``generator_dir`` as a new version of ``cfg.model_name`` and run the promotion rule.

    Refuses (RegistrationError) a generator whose training run FAILED, is unfinished or diverged. Registering
    the same generator from the same training run again reuses its version and its recorded decision.
    ``scorer(generator_dir, data_dir)`` re-scores champion and challenger when ``data_dir`` is given
    (default: the evaluation library). Returns the record written to metrics/register.json.
    """
    import mlflow

    cfg = cfg or load_register_config()
    generator_dir, metrics_file = Path(generator_dir), Path(metrics_file)
    data = Path(data_dir) if data_dir is not None else None
    client = store.client()
    run = check_training_run(client, generator_dir)
    metrics = read_metrics(metrics_file, cfg.primary_metric)
    tags = lineage_tags(generator_dir, run, metrics, metrics_file)
    promote_kwargs = dict(challenger_dir=generator_dir, data_dir=data, scorer=scorer, recorded_scores=metrics)

    existing = find_registered(client, cfg.model_name, tags)
    if existing is not None:
        result = promote_new_version(client, cfg, existing, **promote_kwargs)
        result.update(reused=True, training_run_id=run.run_id, model_uri=f"models:/{cfg.model_name}/{existing}")
        return result

    run_tags = {"mlflow.parentRunId": run.run_id, "productgan.step": "register", "training_run_id": run.run_id}
    with mlflow.start_run(experiment_id=run.experiment_id, run_name="register", tags=run_tags) as reg:
        mlflow.log_params({f"register.{k}": v for k, v in dataclasses.asdict(cfg).items()})
        version, _ = log_and_register(cfg.model_name, generator_dir, {**tags, "register_run_id": reg.info.run_id})
        result = promote_new_version(client, cfg, version, **promote_kwargs)
        mlflow.set_tags({
            "model_name": cfg.model_name, "model_version": version, "promotion.decision": result["decision"],
            "promotion.reason": result["reason"], "champion_version": str(result["champion_version"]),
        })
        for role, scores in result["scores"].items():
            for key, value in (scores or {}).items():
                if value is not None and math.isfinite(value):
                    mlflow.log_metric(f"{role}.{key}", value)
    result.update(reused=False, training_run_id=run.run_id, register_run_id=reg.info.run_id,
                  model_uri=f"models:/{cfg.model_name}/{version}")
    return result
