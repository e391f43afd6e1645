"""What every component does inside its container, in one place.

A component body (which KFP ships as standalone source, so it must import what it uses inside itself) calls
these helpers to: write the run's params file, run one productgan step through its CLI in a subprocess (the
very command ``dvc.yaml`` runs, so dvc and Kubeflow run the same code with the same params), compute the
dataset version, and turn step outputs into KFP metrics and markdown.

Only the standard library and productgan's light modules are imported at the top: this runs in every pod.
"""

from __future__ import annotations

import base64
import contextlib
import math
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

from productgan.redact import redact as redact_uri  # the one redaction (re-exported: components print URIs)

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
def step_workdir(params_text: str, dataset_version: str = "") -> Iterator[Path]:
    """A fresh working directory for one step, removed afterwards: ``params.yaml`` from the run, and
    ``data.dvc`` naming the dataset version so the step's lineage (``productgan.lineage.dataset_version()``)
    records it although no DVC checkout exists inside a pod. Relative outputs of the step (metrics/,
    checkpoints/) land here; read them before the block ends."""
    work = Path(tempfile.mkdtemp(prefix="productgan-step-"))
    try:
        params = parse_params(params_text)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        if dataset_version:
            dvc = {"outs": [{"md5": dataset_version, "path": "data"}]}
            (work / "data.dvc").write_text(yaml.safe_dump(dvc, sort_keys=False), encoding="utf-8")
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_step(step: str, args: Sequence[str], work: Path) -> None:
    """``python -m productgan STEP ARGS`` in ``work`` with the run's params; its output streams to the pod log."""
    cmd = [sys.executable, "-m", "productgan", step, *map(str, args)]
    print(redact_uri(f">> {' '.join(cmd)}  (cwd {work}, params {work / 'params.yaml'})"), flush=True)
    result = subprocess.run(cmd, cwd=work, env={**os.environ, PARAMS_ENV: str(work / "params.yaml")}, check=False)
    if result.returncode != 0:
        raise StepError(redact_uri(
            f"step {step}: `productgan {step}` exited with code {result.returncode}; its log is above. "
            f"Reproduce outside Kubeflow with `productgan --params params.yaml {step} {' '.join(map(str, args))}`"
        ))


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


def flatten_numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers of a (nested) JSON mapping as ``{"a.b": 1.0}``; text, bools and lists are left out."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def png_markdown(path: str | os.PathLike[str], alt: str) -> str:
    """An inline PNG for a KFP markdown artifact (the UI renders data URIs; no bucket access needed)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"


def metrics_table(numbers: Mapping[str, float]) -> str:
    if not numbers:
        return "_no numeric metrics_"
    rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(numbers.items()))
    return f"| metric | value |\n|---|---|\n{rows}"
