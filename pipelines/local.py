"""Run the whole Kubeflow pipeline on this machine with ``kfp.local`` (no cluster).

``runner="subprocess"`` (default, no containers): every component runs in a subprocess of this Python
(``SubprocessRunner(use_venv=False)``), so the package must be importable there: ``run_local`` puts this
checkout on ``PYTHONPATH`` for the run (the caller's environment is left as it was). MLflow goes to a SQLite
file in the work folder unless ``MLFLOW_TRACKING_URI`` is set.

``runner="docker"``: every component runs in a container of the project image (``kfp.local.DockerRunner``
through the Docker API of podman or Docker; see ``pipelines.containers``), as the image's non-root user with
credentials from the environment. MLflow must be a server: ``MLFLOW_TRACKING_URI`` (http) or, unset, one
started here for the run (SQLite and artifacts in the work folder). A local ``--source`` folder is mounted
read-only into the steps.

Cluster settings (GPU, secrets, node selector) are ignored locally with a warning, which is the point: the
same pipeline definition runs here and on a cluster.

The tiny configuration (``TINY``) and a small photo folder cut from the real Fashion-MNIST make the whole
run take a minute or two on two CPU cores: a test of the plumbing, not of model quality.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from components.runtime import parse_params
from pipelines.overrides import apply_overrides, split_params

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST_DIR = Path(os.environ.get("PRODUCTGAN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CATEGORIES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# The tiny configuration: seconds per step on a CPU (keys of the steps' own params sections).
TINY: dict[str, Any] = {
    "preprocess.resolution": 28,
    "preprocess.channels": 1,
    "train.steps": 3,
    "train.batch_size": 16,
    "train.latent_dim": 32,
    "train.log_every": 1,
    "train.g_channels": 8,
    "train.d_channels": 8,
    "evaluate.n": 100,
    "evaluate.fid_n": 20,
    "evaluate.batch_size": 50,
    "evaluate.kid_subsets": 5,
    "evaluate.kid_subset_size": 20,
    "evaluate.classifier_steps": 20,
    "evaluate.grid_per_category": 2,
    # a 3-step generator cannot reach the class-accuracy floor; the local run still exercises promotion
    "register.class_accuracy_floor": 0.0,
}


RUNNERS = ("subprocess", "docker")


@dataclasses.dataclass
class LocalRun:
    workdir: Path
    run_dir: Path  # <pipeline_root>/<pipeline-name-timestamp>/: one folder per task with its artifacts
    tracking_uri: str
    retrained: bool
    check_summary: str
    ui_command: str = ""  # how to browse the run's MLflow records afterwards

    def __post_init__(self) -> None:
        self.ui_command = self.ui_command or f"mlflow ui --backend-store-uri {self.tracking_uri}"


def _read_idx(path: Path) -> Any:
    import numpy as np

    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def make_tiny_source(out: Path, per_category: int = 30) -> Path:
    """A photo folder (``out/<category>/<n>.png``) with the first ``per_category`` real Fashion-MNIST
    training images of each category: the shape of a real product-photo source, small enough for a CI run."""
    from PIL import Image

    images = FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz"
    if not images.is_file():
        raise FileNotFoundError(
            f"{images}: Fashion-MNIST missing; `apt-get install dataset-fashion-mnist` or pass --source"
        )
    x = _read_idx(images)
    y = _read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz")
    for label, name in enumerate(FASHION_MNIST_CATEGORIES):
        folder = out / re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
        folder.mkdir(parents=True, exist_ok=True)
        for n, index in enumerate((y == label).nonzero()[0][:per_category]):
            path = folder / f"{n:04d}.png"
            if not path.exists():
                Image.fromarray(x[index]).save(path, optimize=False)
    return out


def local_settings(checkpoints: Path) -> dict[str, Any]:
    """What a machine without a cluster changes: train's checkpoints in a plain folder (``<checkpoints>/<run id>/``,
    no PVC; the same resume path, see pipelines/scaling.py), train in one process here (no PyTorchJob), and
    evaluate without a GPU (kfp.local ignores accelerators), and the statistics cache in ``$PRODUCTGAN_CACHE``
    (``run_local`` sets it to ``<workdir>/cache`` unless set) instead of a volume."""
    return {
        "pipeline.checkpoints.pvc": "none",
        "pipeline.stats_cache.pvc": "none",
        "pipeline.checkpoints.mount_path": str(checkpoints),
        "pipeline.train_launcher": "pod",
        "pipeline.gpus": 1,
        "pipeline.evaluate_gpus": 0,
    }


def local_params(
    params_text: str, source: str, assignments: Sequence[str], tiny: bool, local: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """params.yaml for a local run: the file, the local and tiny settings, ``ingest.source``, then ``--param``
    overrides. Returns the params text and the pipeline arguments given with ``--param NAME=VALUE``."""
    from pipelines.product_gan import build_pipeline, params_argument, pipeline_inputs

    overrides, arguments = split_params(assignments, pipeline_inputs(build_pipeline(params_text)))
    params = apply_overrides(parse_params(params_text), (local or {}).items())
    if tiny:
        params = apply_overrides(params, TINY.items())
    params = apply_overrides(params, [("ingest.source", source), *overrides])
    return params_argument(params), arguments


def _python_path() -> str:
    parts = [str(REPO), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return os.pathsep.join(dict.fromkeys(parts))


def run_local(
    workdir: str | os.PathLike[str],
    params_text: str,
    source: str | None = None,
    assignments: Sequence[str] = (),
    tiny: bool = True,
    per_category: int = 30,
    runner: str = "subprocess",
    image: str | None = None,
    environment: dict[str, str] | None = None,
) -> LocalRun:
    """Run the pipeline with kfp.local; artifacts under ``workdir/pipeline_root``, MLflow in ``workdir``.

    ``runner="docker"`` runs every step in ``image`` (default: params ``pipeline.image``); ``environment``
    adds variables to the steps' containers."""
    if runner not in RUNNERS:
        raise ValueError(f"runner {runner!r}: use one of {', '.join(RUNNERS)}")
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if source is None:
        source = str(make_tiny_source(work / "source" / "tiny-fashion", per_category))
    # train works in checkpoints/<run id>/: a folder per run, as a volume per run on a cluster
    checkpoints = work / "checkpoints"
    text, arguments = local_params(params_text, source, assignments, tiny, local_settings(checkpoints))
    # the statistics cache is shared by the runs of one workdir (on a cluster: a volume that outlives runs)
    cache = Path(os.environ.get("PRODUCTGAN_CACHE") or work / "cache")
    root = work / "pipeline_root"
    if runner == "subprocess":
        from kfp import local

        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{work / 'mlflow.db'}"
        # kfp.local's subprocesses inherit this process's environment: set for this run only, so a later run
        # in the same process (another workdir) gets its own cache and tracking store, not this one's
        step_env = {"PYTHONPATH": _python_path(), "MLFLOW_TRACKING_URI": tracking_uri, "PRODUCTGAN_CACHE": str(cache)}
        with mock.patch.dict(os.environ, step_env):
            return _run(work, root, local.SubprocessRunner(use_venv=False), text, arguments, None, tracking_uri)
    return _run_in_containers(work, root, text, arguments, source, image, environment or {}, checkpoints, cache)


def _run_in_containers(
    work: Path, root: Path, text: str, arguments: dict[str, Any], source: str, image: str | None,
    environment: dict[str, str], checkpoints: Path, cache: Path,
) -> LocalRun:
    from pipelines.containers import (
        check_tracking_uri,
        docker_host,
        docker_runner,
        gone_containers_not_found,
        step_environment,
        tracking_server,
        writable_root,
    )
    from pipelines.settings import pipeline_params

    image = image or pipeline_params(parse_params(text)).image
    read_only = [Path(source).resolve()] if Path(source).exists() else []
    with contextlib.ExitStack() as stack:
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
        ui = ""
        if tracking_uri:
            check_tracking_uri(tracking_uri)
        else:  # a server for this run only; its store stays in the work folder for the next run
            store = work / "mlflow"
            tracking_uri = stack.enter_context(tracking_server(store))
            ui = (f"mlflow ui --backend-store-uri sqlite:///{store / 'mlflow.db'} "
                  f"--artifacts-destination {store / 'mlartifacts'}")
        stack.enter_context(docker_host())
        stack.enter_context(gone_containers_not_found())
        env = step_environment({**environment, "MLFLOW_TRACKING_URI": tracking_uri, "PRODUCTGAN_CACHE": str(cache)})
        # the checkpoint folder is what a cluster mounts as train's volume (writable, kept across retries); the
        # statistics cache what it mounts for evaluate and register
        writable = [writable_root(checkpoints), writable_root(cache)]
        runner = docker_runner(image, env, read_only, writable_paths=writable)
        result = _run(work, writable_root(root), runner, text, arguments, image, tracking_uri)
        result.ui_command = ui or result.ui_command
        return result


def _run(
    work: Path, root: Path, runner: Any, text: str, arguments: dict[str, Any], image: str | None, tracking_uri: str
) -> LocalRun:
    from kfp import local

    from pipelines.product_gan import CHECK_TASK, build_pipeline

    before = set(root.iterdir()) if root.is_dir() else set()
    local.init(runner=runner, pipeline_root=str(root), raise_on_error=True)
    pipeline = build_pipeline(text, image)
    with warnings.catch_warnings():
        # KFP guesses from the image name; the project image has no "python" in its name but runs Python 3.11.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        pipeline(**arguments)

    (run_dir,) = set(root.iterdir()) - before
    summary_path = run_dir / CHECK_TASK / "summary"
    summary = summary_path.read_text(encoding="utf-8") if summary_path.is_file() else ""
    return LocalRun(work, run_dir, tracking_uri, (run_dir / "register").is_dir(), summary)
