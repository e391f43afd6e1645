"""preprocess: the ingested folder -> validated, split, memory-mappable arrays (a Dataset folder)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output
from kfp.dsl.python_component import PythonComponent


def preprocess(params: str, dataset_version: str, data: Input[Dataset], prepared: Output[Dataset]):
    """``productgan preprocess --input DATA --out PREPARED`` with the run's params.

    ``dataset_version`` (the ingested data's DVC hash) is an input so the backend cache never reuses a
    result computed from other data."""
    import json
    import os

    from components.runtime import run_step, step_workdir

    with step_workdir(params, dataset_version) as work:
        run_step("preprocess", ["--input", data.path, "--out", prepared.path], work)
    manifest_path = os.path.join(prepared.path, "manifest.json")
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    counts = {split: c.get("total") for split, c in (manifest.get("counts") or {}).items()}
    prepared.metadata.update(
        {
            "dataset_version": dataset_version,
            "resolution": manifest.get("resolution"),
            "channels": manifest.get("channels"),
            "categories": len(manifest.get("categories") or []),
            **{f"{split}_images": n for split, n in counts.items()},
        }
    )


def component(image: str) -> PythonComponent:
    return dsl.component(preprocess, base_image=image, install_kfp_package=False)
