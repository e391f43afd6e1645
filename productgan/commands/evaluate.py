"""`productgan evaluate`: score a generator against the prepared data; metrics.json + grid.png in --out,
the same numbers logged on the training run in MLflow (productgan.metrics.step)."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--generator",
    "generator_ref",
    required=True,
    help="Generator folder (from `productgan train`) or an MLflow model URI (models:/NAME@ALIAS, runs:/ID/PATH).",
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Prepared dataset (from `productgan preprocess`).",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for metrics.json and grid.png."
)
@click.option(
    "--n", type=int, default=None, help="Generated samples for the domain metrics (default: params evaluate.n)."
)
def evaluate(generator_ref: str, data_dir: str, out_dir: str, n: int | None) -> None:
    """Score a generator: FID, FID∞, per-category FID, fd_domain, KID, precision/recall, class accuracy, collapse."""
    import logging
    import os
    import sys
    from pathlib import Path

    from productgan.lineage import git_commit
    from productgan.metrics.evaluate import evaluation_params
    from productgan.metrics.inception import InceptionWeightsMissing
    from productgan.metrics.step import GRID_FILE, METRICS_FILE, evaluate_step
    from productgan.params import ParamsError

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # an unreachable tracking server should cost seconds, not minutes of retries (user settings win)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        params = evaluation_params(n=n)
        result, run_id = evaluate_step(generator_ref, data_dir, out_dir, params, git_commit=git_commit())
    except (ParamsError, FileNotFoundError, ValueError, InceptionWeightsMissing) as exc:
        raise click.ClickException(str(exc)) from exc

    from productgan.metrics.catalog import sample_count

    counted = [k for k in result if sample_count(k) and (k.endswith("_mean") or "_" not in k)]  # fid2k, ..._mean
    shown = ("fd_domain", "kid", "precision", "recall", "class_accuracy", "diversity_ratio_min", "mode_collapse",
             *counted, "fid_inf")
    summary = "  ".join(
        f"{k}={result[k]:.4g}" if isinstance(result[k], float) else f"{k}={result[k]}" for k in shown if k in result
    )
    out = Path(out_dir)
    click.echo(f"evaluate: {summary}")
    if "fid_meta" in result:  # an FID means little without its sample counts and how it was computed
        m = result["fid_meta"]
        fit = result.get("fid_inf_fit") or {}
        at10k = f"; the FID∞ fit expects {fit['fid_at_10000']:.4g} at 10,000 a side" if "fid_at_10000" in fit else ""
        click.echo(f"evaluate: Inception metrics at {m['n_generated']} generated vs {m['n_real']} real "
                   f"({m['compute']}){at10k}")
    logged = f"; logged to MLflow run {run_id}" if run_id else ""
    click.echo(f"evaluate: wrote {out / METRICS_FILE} and {out / GRID_FILE}{logged}")
