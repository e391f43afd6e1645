"""preprocess: the ingested folder -> validated, split, memory-mappable arrays (a Dataset folder); or, for a
catalogue, shards decoded in parallel pods and one merge (pipelines/scaling.py)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output
from kfp.dsl.python_component import PythonComponent


def preprocess(params: str, dataset_version: str, data: Input[Dataset], prepared: Output[Dataset]):
    """``productgan preprocess --input DATA --out PREPARED`` with the run's params.

    ``dataset_version`` (the ingested data's DVC hash) is an input so the backend cache never reuses a
    result computed from other data."""
    from components.runtime import prepared_metadata, run_step, step_workdir

    with step_workdir(params, dataset_version) as work:
        run_step("preprocess", ["--input", data.path, "--out", prepared.path], work)
    prepared.metadata.update(prepared_metadata(prepared.path, dataset_version))


def preprocess_shard(
    params: str, dataset_version: str, data: Input[Dataset], shard: int, shards: int, part: Output[Dataset]
):
    """``productgan preprocess --input DATA --shard SHARD/SHARDS --out PART``: one pod's share of the photos."""
    from components.runtime import run_step, step_workdir

    with step_workdir(params, dataset_version) as work:
        run_step("preprocess", ["--input", data.path, "--shard", f"{shard}/{shards}", "--out", part.path], work)
    part.metadata.update({"dataset_version": dataset_version, "shard": shard, "shards": shards})


def preprocess_merge(params: str, dataset_version: str, parts: Input[list[Dataset]], prepared: Output[Dataset]):
    """``productgan preprocess --merge PART ... --out PREPARED``: dedup and split the shards' parts, as one
    preprocess would (the same bytes)."""
    from components.runtime import prepared_metadata, run_step, step_workdir

    args = [arg for part in parts for arg in ("--merge", part.path)]
    with step_workdir(params, dataset_version) as work:
        run_step("preprocess", [*args, "--out", prepared.path], work)
    prepared.metadata.update(prepared_metadata(prepared.path, dataset_version))


def component(image: str) -> PythonComponent:
    return dsl.component(preprocess, base_image=image, install_kfp_package=False)


def shard_component(image: str) -> PythonComponent:
    return dsl.component(preprocess_shard, base_image=image, install_kfp_package=False)


def merge_component(image: str) -> PythonComponent:
    return dsl.component(preprocess_merge, base_image=image, install_kfp_package=False)
