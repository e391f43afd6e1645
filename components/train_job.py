"""train over several nodes: a Kubeflow PyTorchJob trains (components/pytorchjob.py); this step waits for it and
passes its generator on (the same outputs as components/train.py, so evaluate and register do not care)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent


def train(  # named like components/train.py's: the task is "train" whichever launcher runs it
    params: str,
    dataset_version: str,
    prepared: Input[Dataset],
    generator: Output[Model],
    metrics: Output[Metrics],
    job: str,
    pvc_name: str,
    run_id: str,
):
    """Stage the data and params on the run's shared volume, run the PyTorchJob, collect its generator.

    ``job``: the job's settings rendered from params.yaml ``pipeline`` at compile time (JSON of
    ``components.pytorchjob.JobSpec`` fields, plus ``timeout_s`` and ``poll_s``); ``pvc_name``: the run's
    ReadWriteMany checkpoint claim, mounted in this pod and in every pod of the job at ``mount_path``."""
    import json
    import os

    from components.pytorchjob import JobSpec, run_pytorchjob
    from components.runtime import copy_folder, require_tracking_uri, step_workdir, train_outputs

    require_tracking_uri("train")
    settings = json.loads(job)
    timeout_s, poll_s = float(settings.pop("timeout_s")), float(settings.pop("poll_s"))
    # the run's folder on the shared volume is the job's working directory: params.yaml, data.dvc, the relative
    # checkpoints/train of every resume, metrics/; the data and the generator sit beside them
    with step_workdir(params, dataset_version, keep_in=os.path.join(settings["mount_path"], run_id)) as base:
        work, data, out = str(base), str(base / "prepared"), str(base / "generator")
    if not os.path.isfile(os.path.join(data, "manifest.json")):
        copy_folder(prepared.path, data)

    from kubeflow.training import TrainingClient

    spec = JobSpec(name="", pvc_name=pvc_name, work_dir=work, data_dir=data, out_dir=out, **settings)
    client = TrainingClient(namespace=spec.namespace) if spec.namespace else TrainingClient()
    run_pytorchjob(client, spec, run_id, timeout_s, poll_s)

    copy_folder(out, generator.path)
    numbers, meta = train_outputs(work, generator.path, dataset_version)
    for name, value in numbers.items():
        metrics.log_metric(name, value)
    generator.metadata.update(meta)


def component(image: str) -> PythonComponent:
    return dsl.component(train, base_image=image, install_kfp_package=False)
