"""What every component does inside its container, in one place.

A component body (which KFP ships as standalone source, so it must import what it uses inside itself) calls
these helpers to: write the run's params file, run one productgan step through its CLI in a subprocess (the
very command ``dvc.yaml`` runs, so dvc and Kubeflow run the same code with the same params), compute the
dataset version, and turn step outputs into KFP markdown (numbers: ``productgan.metrics.flatten``).

Only the standard library and productgan's light modules are imported at the top: this runs in every pod.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from productgan.redact import redact

# Every pod the pipeline starts carries these labels (its steps, the PyTorchJob's replicas): the NetworkPolicies of
# infra/k8s/base/network-policies.yaml let such pods, and no others but the studio, reach MLflow and MinIO.
STEP_POD_LABELS = {"app.kubernetes.io/component": "productgan-step"}

PARAMS_ENV = "PRODUCTGAN_PARAMS"
_DVC_MD5 = re.compile(r"^[0-9a-f]{32}\.dir$")


class StepError(RuntimeError):
    """A productgan step failed inside a component; the step's own log is printed above this message."""


def parse_params(text: str) -> dict[str, Any]:
    """The pipeline's ``params`` parameter (params.yaml content; JSON is YAML too) as a dict."""
    doc = yaml.safe_load(text) if text and text.strip() else {}
    if not isinstance(doc, dict):
        raise ValueError(
            f"pipeline parameter `params`: expected a params.yaml mapping of sections, got {type(doc).__name__}; "
            "pass the content of params.yaml (the compiled default) or leave it unset"
        )
    return doc


@contextlib.contextmanager
def step_workdir(params_text: str, dataset_version: str = "", keep_in: str | None = None) -> Iterator[Path]:
    """A fresh working directory for one step, removed afterwards: ``params.yaml`` from the run, and
    ``data.dvc`` naming the dataset version so the step's lineage (``productgan.lineage.dataset_version()``)
    records it although no DVC checkout exists inside a pod. Relative outputs of the step (metrics/,
    checkpoints/) land here; read them before the block ends.

    ``keep_in``: use (and keep) this folder instead, e.g. on a volume that outlives the pod, so the relative
    ``checkpoints/`` of a train survive for a retry; the params stay exactly the run's (their hash is lineage)."""
    if keep_in:
        work = require_writable(keep_in, "train")
        write_step_files(work, params_text, dataset_version)
        yield work
        return
    work = Path(tempfile.mkdtemp(prefix="productgan-step-"))
    try:
        write_step_files(work, params_text, dataset_version)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_step_files(work: Path, params_text: str, dataset_version: str = "") -> None:
    """``params.yaml`` and ``data.dvc`` of a step in its working directory ``work`` (see ``step_workdir``)."""
    params = parse_params(params_text)
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    if dataset_version:
        dvc = {"outs": [{"md5": dataset_version, "path": "data"}]}
        (work / "data.dvc").write_text(yaml.safe_dump(dvc, sort_keys=False), encoding="utf-8")


def copy_folder(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy folder ``src`` to ``dst`` whole (a temp sibling renamed into place); an existing ``dst`` is replaced."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return dst


def with_params(params_text: str, assignments: Mapping[str, Any]) -> str:
    """The run's params with dotted ``section.key`` values set (a step's own settings, e.g. its checkpoint folder)."""
    import json

    from pipelines.overrides import apply_overrides

    return json.dumps(apply_overrides(parse_params(params_text), assignments.items()), ensure_ascii=False)


def step_command(step: str, args: Sequence[str], nproc: int = 1) -> list[str]:
    """The command of one productgan step; ``nproc`` > 1 launches that many data-parallel processes with
    ``torchrun --standalone --nproc_per_node=N`` (DDP: NCCL on GPUs, gloo on CPUs; productgan.gan.distributed)."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*launcher, "-m", "productgan", step, *map(str, args)]


def run_step(step: str, args: Sequence[str], work: Path, nproc: int = 1) -> None:
    """``python -m productgan STEP ARGS`` in ``work`` with the run's params; its output streams to the pod log.
    ``nproc`` > 1: under torchrun (see ``step_command``)."""
    cmd = step_command(step, args, nproc)
    print(redact(f">> {' '.join(cmd)}  (cwd {work}, params {work / 'params.yaml'})"), flush=True)
    result = subprocess.run(cmd, cwd=work, env={**os.environ, PARAMS_ENV: str(work / "params.yaml")}, check=False)
    if result.returncode != 0:
        raise StepError(redact(
            f"step {step}: `productgan {step}` exited with code {result.returncode}; its log is above. "
            f"Reproduce outside Kubeflow with `productgan --params params.yaml {step} {' '.join(map(str, args))}`"
        ))


def require_writable(folder: str | os.PathLike[str], step: str) -> Path:
    """Create ``folder`` and check this process may write there (a volume's root belongs to root unless the
    StorageClass or a pod fsGroup says otherwise, and the image runs as a non-root user)."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except PermissionError as exc:
        raise StepError(
            f"step {step}: cannot write to {path} as uid {os.getuid()} ({exc}). The checkpoint volume's root must "
            "be writable by the image's user: use a StorageClass that provisions writable roots (NFS subdir, EFS "
            "access points, ...), a cluster policy that sets the pod's fsGroup, or pipeline.checkpoints.pvc with "
            "a claim prepared for it (docs/scaling.md)"
        ) from exc
    return path


def require_tracking_uri(step: str) -> str:
    """Steps that use MLflow must share one tracking server; without MLFLOW_TRACKING_URI each pod would write
    a throw-away ``mlflow.db`` of its own and the registry would silently stay empty."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise RuntimeError(
            f"step {step}: MLFLOW_TRACKING_URI is not set. On a cluster it comes from the ConfigMap "
            "`productgan-config` (infra/k8s); locally `productgan pipeline run-local` sets it."
        )
    return uri


def is_dvc_version(value: str) -> bool:
    """True for a DVC directory hash such as ``0123…cdef.dir`` (what ``data.dvc`` records)."""
    return bool(_DVC_MD5.match(value or ""))


def dvc_dir_version(path: str | os.PathLike[str]) -> str:
    """The hash ``dvc add`` would record for folder ``path`` (``<md5>.dir``): the same dataset version
    whether the data was ingested by ``make run`` or by the pipeline."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as odb_dir:
        _, _, obj = build(HashFileDB(fs, odb_dir), os.fspath(path), fs, "md5", dry_run=True)
    return str(obj.hash_info.value)


def png_markdown(path: str | os.PathLike[str], alt: str) -> str:
    """An inline PNG for a KFP markdown artifact (the UI renders data URIs; no bucket access needed)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"


def metrics_table(numbers: Mapping[str, float]) -> str:
    if not numbers:
        return "_no numeric metrics_"
    rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(numbers.items()))
    return f"| metric | value |\n|---|---|\n{rows}"


def prepared_metadata(prepared_dir: str | os.PathLike[str], dataset_version: str) -> dict[str, Any]:
    """What the KFP UI shows of a prepared dataset (from its manifest.json): version, size, counts per split."""
    import json

    with open(Path(prepared_dir) / "manifest.json", encoding="utf-8") as fh:
        manifest = json.load(fh)
    counts = {split: c.get("total") for split, c in (manifest.get("counts") or {}).items()}
    return {
        "dataset_version": dataset_version,
        "resolution": manifest.get("resolution"),
        "channels": manifest.get("channels"),
        "categories": len(manifest.get("categories") or []),
        **{f"{split}_images": n for split, n in counts.items()},
    }


def train_outputs(work: str | os.PathLike[str], generator_dir: str | os.PathLike[str],
                  dataset_version: str) -> tuple[dict[str, float], dict[str, Any]]:
    """What a train step reports, whichever launcher trained: the numbers of ``<work>/metrics/train.json``
    (written relative to the working directory, as under ``dvc repro``), flattened for KFP Metrics, and the
    generator's metadata (its MLflow run from ``run.json``, the dataset version)."""
    import json

    from productgan.metrics.flatten import flatten_numbers

    numbers: dict[str, float] = {}
    train_metrics = Path(work) / "metrics" / "train.json"
    if train_metrics.is_file():
        numbers = flatten_numbers(json.loads(train_metrics.read_text(encoding="utf-8")))
    meta: dict[str, Any] = {}
    run_json = Path(generator_dir) / "run.json"
    if run_json.is_file():
        run = json.loads(run_json.read_text(encoding="utf-8"))
        meta.update(mlflow_run_id=run.get("run_id"), mlflow_experiment_id=run.get("experiment_id"))
    meta["dataset_version"] = dataset_version
    return numbers, meta
