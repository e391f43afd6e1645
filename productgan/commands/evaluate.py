"""`productgan evaluate`: score a generator against the prepared data; metrics.json + grid.png in --out,
the same numbers logged on the training run in MLflow."""

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
    """Score a generator: fd_domain, KID, precision/recall, class accuracy, collapse, optionally FID."""
    import logging
    import os
    import sys
    import tempfile
    from pathlib import Path

    from productgan.gan.export import load_generator
    from productgan.io import atomic_write_bytes, atomic_write_json
    from productgan.lineage import git_commit
    from productgan.metrics.evaluate import EvaluateParams, evaluate_generator, generator_sample_fn, resolve_device
    from productgan.metrics.grid import category_grid
    from productgan.metrics.inception import InceptionWeightsMissing
    from productgan.metrics.tracking import fetch_generator, is_model_uri, log_to_training_run
    from productgan.params import ParamsError, load_section
    from productgan.redact import redact

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # an unreachable tracking server should cost seconds, not minutes of retries (user settings win)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        params = load_section("evaluate", EvaluateParams, overrides={"n": n})
        params.validate()
    except ParamsError as exc:
        raise click.ClickException(str(exc)) from exc
    out = Path(out_dir)
    device = resolve_device(params.device)

    with tempfile.TemporaryDirectory(prefix="productgan-evaluate-") as tmp:
        try:
            folder = fetch_generator(generator_ref, tmp) if is_model_uri(generator_ref) else Path(generator_ref)
            generator, config = load_generator(folder, device)
            result = evaluate_generator(generator, config, data_dir, params, device=device)
        except (FileNotFoundError, ValueError, InceptionWeightsMissing) as exc:
            raise click.ClickException(str(exc)) from exc
        # timings go to the log, not to metrics.json: the same generator and data give the same file
        seconds = result["meta"].pop("seconds", {})
        logging.getLogger("productgan.evaluate").info(
            "evaluate: seconds %s", ", ".join(f"{k} {v:.1f}" for k, v in seconds.items())
        )
        result["meta"]["generator_ref"] = redact(generator_ref)
        result["meta"]["git_commit"] = git_commit()
        atomic_write_json(out / "metrics.json", result)
        grid = category_grid(
            generator_sample_fn(generator, config.latent_dim, params.truncation, params.batch_size),
            list(config.categories),
            params.grid_per_category,
            params.seed,
        )
        import io

        buf = io.BytesIO()
        grid.save(buf, format="PNG")
        atomic_write_bytes(out / "grid.png", buf.getvalue())
        run_id = log_to_training_run(result, folder, generator_ref, [out / "metrics.json", out / "grid.png"])

    shown = ("fd_domain", "kid", "precision", "recall", "class_accuracy", "diversity_ratio_min", "mode_collapse", "fid")
    summary = "  ".join(
        f"{k}={result[k]:.4g}" if isinstance(result[k], float) else f"{k}={result[k]}" for k in shown if k in result
    )
    click.echo(f"evaluate: {summary}")
    click.echo(
        f"evaluate: wrote {out / 'metrics.json'} and {out / 'grid.png'}"
        + (f"; logged to MLflow run {run_id}" if run_id else "")
    )
