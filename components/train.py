"""train: prepared arrays -> the generator folder (a Model), with the training run logged to MLflow."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent


def train(
    params: str,
    dataset_version: str,
    prepared: Input[Dataset],
    generator: Output[Model],
    metrics: Output[Metrics],
    checkpoint_root: str = "",
    run_id: str = "",
    nproc: int = 1,
):
    """``productgan train --data PREPARED --out GENERATOR`` with the run's params (recipe, steps, ...).

    ``checkpoint_root`` (on a cluster: the mount of the run's checkpoint volume) holds the step's working folder
    ``<checkpoint_root>/<run_id>/``, so train's (relative) ``checkpoints/train`` outlive the pod, and train runs
    with ``--resume``: a retried train (after an eviction or preemption) goes on from its last checkpoint.
    ``nproc`` > 1: one process per GPU under torchrun."""
    import json
    import os

    from components.runtime import require_tracking_uri, run_step, step_workdir
    from productgan.metrics.flatten import flatten_numbers

    require_tracking_uri("train")
    args = ["--data", prepared.path, "--out", generator.path]
    keep_in = os.path.join(checkpoint_root, run_id) if checkpoint_root else None  # run_id "": a volume per run
    if keep_in:
        args.append("--resume")
    with step_workdir(params, dataset_version, keep_in=keep_in) as work:
        run_step("train", args, work, nproc=nproc)
        # metrics/train.json is written relative to the step's working directory (as under `dvc repro`).
        train_metrics = os.path.join(work, "metrics", "train.json")
        numbers = {}
        if os.path.isfile(train_metrics):
            with open(train_metrics, encoding="utf-8") as fh:
                numbers = flatten_numbers(json.load(fh))
    for name, value in numbers.items():
        metrics.log_metric(name, value)
    run_json = os.path.join(generator.path, "run.json")
    if os.path.isfile(run_json):
        with open(run_json, encoding="utf-8") as fh:
            run = json.load(fh)
        generator.metadata["mlflow_run_id"] = run.get("run_id")
        generator.metadata["mlflow_experiment_id"] = run.get("experiment_id")
    generator.metadata["dataset_version"] = dataset_version


def component(image: str) -> PythonComponent:
    return dsl.component(train, base_image=image, install_kfp_package=False)
