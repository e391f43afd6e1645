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
    import os

    from components.runtime import require_tracking_uri, run_step, step_workdir, train_outputs

    require_tracking_uri("train")
    args = ["--data", prepared.path, "--out", generator.path]
    keep_in = os.path.join(checkpoint_root, run_id) if checkpoint_root else None  # run_id "": a volume per run
    if keep_in:
        args.append("--resume")
    with step_workdir(params, dataset_version, keep_in=keep_in) as work:
        run_step("train", args, work, nproc=nproc)
        numbers, meta = train_outputs(work, generator.path, dataset_version)  # before the work folder goes
    for name, value in numbers.items():
        metrics.log_metric(name, value)
    generator.metadata.update(meta)


def component(image: str) -> PythonComponent:
    return dsl.component(train, base_image=image, install_kfp_package=False)
