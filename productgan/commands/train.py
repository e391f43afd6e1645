"""`productgan train`: train the class-conditional GAN on a prepared dataset (params.yaml section `train`)."""

from __future__ import annotations

import sys

import click

from productgan.gan.recipes import RECIPES  # light: dataclasses only


@click.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False),
              help="Prepared dataset folder (output of `productgan preprocess`).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: generator.safetensors + generator.json, run.json, grid.png.")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=None,
              help="Training recipe (default: train.recipe in params.yaml).")
@click.option("--steps", type=int, default=None, help="Optimisation steps (default: train.steps).")
@click.option("--resume", is_flag=True,
              help="Continue from the newest checkpoint in train.checkpoint_dir (and its MLflow run) when it was "
                   "made with the same settings and data; otherwise start a new run.")
def train(data_dir: str, out_dir: str, recipe: str | None, steps: int | None, resume: bool) -> None:
    """Train the generator; checkpoints go to train.checkpoint_dir, metrics and plots to their files.

    Data parallel: `torchrun --nproc_per_node N -m productgan train ...`. SIGTERM writes a checkpoint and
    exits with 143; a diverged run is marked FAILED in MLflow and run.json and exits with 1.
    """
    from productgan.gan.recipes import TrainParams
    from productgan.gan.trainer import Trainer
    from productgan.lineage import Lineage
    from productgan.params import ParamsError, load_section

    try:
        params = load_section("train", TrainParams, overrides={"recipe": recipe, "steps": steps})
        # lineage is read here, from the working directory (data.dvc, the params file, git), not by the trainer
        trainer = Trainer(params, data_dir, out_dir, resume=resume, lineage=Lineage.current())
    except (ParamsError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(f"train: {exc}") from exc
    result = trainer.run()
    if result.exit_code:
        sys.exit(result.exit_code)


@click.command("sync-run")
@click.option("--checkpoints", "checkpoint_dir", default=None, type=click.Path(file_okay=False),
              help="The training's checkpoint folder (default: train.checkpoint_dir in params.yaml).")
def sync_run(checkpoint_dir: str | None) -> None:
    """Send to MLflow what train, evaluate and register kept while the tracking server was down, and complete
    run.json.

    No step waits for MLflow: calls it cannot send are kept in <checkpoints>/mlflow-pending/ (train) and in
    <evaluate.cache_dir>/mlflow-pending/ (evaluate, register). Run this (not while a step runs) once the server
    answers; exits 1 while anything is still kept."""
    from productgan.gan.run import sync_runs
    from productgan.metrics.evaluate import evaluation_params
    from productgan.params import ParamsError
    from productgan.tracking import step_pending_root, sync_journals

    try:
        if checkpoint_dir is None:
            from productgan.gan.recipes import TrainParams
            from productgan.params import load_section

            checkpoint_dir = load_section("train", TrainParams).checkpoint_dir
        steps_root = step_pending_root(evaluation_params().cache_dir).parent
    except ParamsError as exc:
        raise click.ClickException(f"sync-run: {exc}") from exc
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    complete = sync_runs(checkpoint_dir, say=say)
    complete = sync_journals(steps_root, say=say) and complete
    if not complete:
        sys.exit(1)


@click.command("code-version")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Also write it as YAML (`train: VERSION`) to this file (dvc.yaml's stage `settings` does).")
def code_version(out: str | None) -> None:
    """Print the model code's version and the modules it covers: what --resume, the retrain check and DVC's train
    stage compare (every module training imports, less those that only record the run; comments and docstrings
    do not count)."""
    from productgan.io import atomic_open
    from productgan.lineage import model_code_files, model_code_version

    version = model_code_version()
    click.echo(f"model code {version}: {', '.join(model_code_files())}")
    if out:
        text = (f"# The model code's version: what DVC's train stage, --resume and the retrain check compare.\n"
                f"# Written by `productgan code-version --out {out}`; do not edit.\ntrain: {version}\n")
        with atomic_open(out, "wb") as fh:
            fh.write(text.encode("utf-8"))
