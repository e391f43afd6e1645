"""ingest: product photos from the configured source -> a Dataset folder (``data/`` layout) and its version."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output
from kfp.dsl.python_component import PythonComponent


def ingest(params: str, dataset_version: str, data: Output[Dataset]) -> NamedTuple(
    "IngestOutputs", [("dataset_version", str)]
):
    """Ingest ``ingest.source`` of the run's params; output the DVC hash of what was ingested.

    ``dataset_version``: empty = whatever the source holds now (scheduled retraining); a DVC hash (``….dir``,
    as in data.dvc) = the version this run must train on (the run fails if the source now holds other data);
    anything else (e.g. a git revision) is recorded with the run and keys the backend cache.
    """
    from collections import namedtuple

    from components.runtime import dvc_dir_version, is_dvc_version, parse_params, run_step, step_workdir
    from productgan.redact import redact

    source = (parse_params(params).get("ingest") or {}).get("source") or "fashion-mnist"
    with step_workdir(params) as work:
        run_step("ingest", ["--source", source, "--out", data.path], work)

    actual = dvc_dir_version(data.path)
    if is_dvc_version(dataset_version) and dataset_version != actual:
        raise ValueError(redact(
            f"step ingest: source {source!r} now holds dataset version {actual}, but this run asked for "
            f"{dataset_version}. Submit without dataset_version to train on the current data, or point "
            "ingest.source at the data recorded in data.dvc"
        ))
    data.metadata.update({"dataset_version": actual, "requested_version": dataset_version,
                          "source": redact(source)})
    print(f">> dataset version {actual} (source {redact(source)})", flush=True)
    return namedtuple("IngestOutputs", ["dataset_version"])(actual)


def component(image: str) -> PythonComponent:
    # install_kfp_package=False: the project image already has kfp; pods must not pip install at start-up.
    return dsl.component(ingest, base_image=image, install_kfp_package=False)
