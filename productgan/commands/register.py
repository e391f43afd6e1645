"""`productgan register` and `productgan promote` (heavy imports live inside the commands)."""

from __future__ import annotations

import json
import os
import sys

import click


def _quiet_downloads() -> None:
    # MLflow's per-file artifact progress bars flood logs (dvc, Kubeflow): only on a terminal
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true" if sys.stderr.isatty() else "false")
    # A tracking server that goes away mid-step should cost seconds, not MLflow's ~4 minutes of retries per
    # request (7 retries); 3 still ride out a restart. User settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")


@click.command()
@click.option("--generator", "generator_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Generator folder from `productgan train` (weights, generator.json, run.json).")
@click.option("--metrics", "metrics_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="metrics.json from `productgan evaluate`.")
@click.option("--data", "data_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Prepared folder: champion and challenger are re-scored on it. Without it, only a first "
                   "version can become champion.")
@click.option("--out", "out_file", default="metrics/register.json", show_default=True, type=click.Path(dir_okay=False),
              help="Where the decision is written.")
@click.option("--model-name", default=None, help="Registered model name (default: params.yaml register.model_name).")
def register(
    generator_dir: str, metrics_file: str, data_dir: str | None, out_file: str, model_name: str | None
) -> None:
    """Register the trained generator in MLflow and decide champion/challenger."""
    from productgan.io import atomic_write_json
    from productgan.registry.config import load_register_config
    from productgan.registry.lock import LockTimeout
    from productgan.registry.log import RegistrationError
    from productgan.registry.register import register_generator
    from productgan.registry.store import TrackingUnavailable

    _quiet_downloads()
    cfg = load_register_config(overrides={"model_name": model_name})
    try:
        result = register_generator(generator_dir, metrics_file, data_dir=data_dir, cfg=cfg)
    except (RegistrationError, LockTimeout, TrackingUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    keys = ("model_name", "version", "champion_version", "decision", "scores", "reason", "mlflow_pending")
    record = {k: result[k] for k in keys if k in result}  # mlflow_pending: records kept for `productgan sync-run`
    atomic_write_json(out_file, record)
    click.echo(f"{cfg.model_name} version {result['version']}: {result['decision']} ({result['reason']}); "
               f"champion is version {result['champion_version']}")


@click.command()
@click.option("--version", "version", type=int, default=None, help="Make this version champion by hand.")
@click.option("--rollback", is_flag=True, help="Champion back to the previous one in champion_history.")
@click.option("--reason", default=None, help="Why (recorded on the version with who and when).")
@click.option("--model-name", default=None, help="Registered model name (default: params.yaml register.model_name).")
def promote(version: int | None, rollback: bool, reason: str | None, model_name: str | None) -> None:
    """Move the `champion` alias by hand (--version N or --rollback); with neither, show aliases and history."""
    if version is not None and rollback:
        raise click.UsageError("give --version N or --rollback, not both")
    from productgan.registry import promote as promotion
    from productgan.registry import store
    from productgan.registry.config import load_register_config
    from productgan.registry.lock import LockTimeout

    _quiet_downloads()
    cfg = load_register_config(overrides={"model_name": model_name})
    try:
        client = store.client()
        if version is not None:
            result = promotion.promote_version(client, cfg, version, reason)
        elif rollback:
            result = promotion.rollback(client, cfg, reason)
        else:
            result = promotion.status(client, cfg)
    except (promotion.PromotionError, LockTimeout, store.TrackingUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result, indent=2, sort_keys=True))
