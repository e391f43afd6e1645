"""Log a trained generator as an MLflow pyfunc model and register it as a new version with its lineage.

The model is ``productgan.serve.pyfunc.ProductGANModel`` (logged as code: ``model_code.py``) with the generator
folder (safetensors weights + config with category names) as artifact ``generator``, a signature, an input
example, pinned pip requirements and the ``productgan`` package itself as ``code_paths`` -- so
``mlflow.pyfunc.load_model`` works in any process with those requirements, productgan installed or not.
Nothing is pickled.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from productgan.io import read_json, sha256_file
from productgan.lineage import dataset_version, git_commit, model_code_version, model_params_hash
from productgan.metrics.flatten import flatten_numbers
from productgan.redact import redact

MODEL_CODE = Path(__file__).with_name("model_code.py")  # builds ProductGANModel at load time: no pickle
MODEL_ARTIFACT = "generator"  # the logged model's name in its run, and the pyfunc artifact key
GENERATOR_FILES = ("generator.safetensors", "generator.json")
# What ProductGANModel needs at load and predict time (versions pinned from this environment).
RUNTIME_REQUIREMENTS = ("mlflow", "torch", "safetensors", "numpy", "pandas", "pillow")
MAX_METRIC_TAGS = 40
# bundled productgan code leaves out what a model never needs: the command line, the studio and bytecode
CODE_EXCLUDE = ("__pycache__", "*.pyc", "commands", "cli.py", "__main__.py", "studio")


class RegistrationError(RuntimeError):
    """The generator cannot be registered; the message names the file and the fix."""


@dataclass(frozen=True)
class TrainingRun:
    run_id: str
    status: str
    experiment_id: str
    run_json: dict[str, Any]


def pip_requirements() -> list[str]:
    reqs = []
    for dist in RUNTIME_REQUIREMENTS:
        version = importlib.metadata.version(dist).split("+", 1)[0]  # torch 2.13.0+cpu -> 2.13.0
        reqs.append(f"{dist}=={version}")
    return reqs


def check_training_run(client: Any, generator_dir: Path) -> TrainingRun:
    """The training run behind ``generator_dir`` (from its run.json); refuses FAILED, unfinished or diverged runs."""
    from mlflow.exceptions import MlflowException

    run_file = generator_dir / "run.json"
    if not run_file.is_file():
        raise RegistrationError(
            f"register: {run_file} is missing; it is written by `productgan train` next to the weights. "
            "Re-run the train step (or `dvc repro train`)."
        )
    info = read_json(run_file)
    run_id, file_status = info.get("run_id"), str(info.get("status", ""))
    pending = info.get("mlflow_pending")
    if pending:  # training went on while the tracking server was down; its run is not complete in MLflow
        raise RegistrationError(
            f"register: {run_file} says the training run is not complete in MLflow (missing: "
            f"{pending.get('missing')}). Send what training kept with `{pending.get('command')}` once the "
            "tracking server answers, then register again."
        )
    if not run_id:
        raise RegistrationError(f"register: {run_file} has no run_id; re-run `productgan train`")
    if file_status != "FINISHED":
        raise RegistrationError(
            f"register: refused; {run_file} says the training run {run_id} ended {file_status or 'without a status'}"
            " (a FAILED or diverged run is never registered or promoted). Fix training and re-run it."
        )
    if str(info.get("diverged", "")).lower() in ("1", "true", "yes"):
        raise RegistrationError(f"register: refused; {run_file} says training run {run_id} diverged")
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise  # the store did not answer properly: register_generator reports it as an outage
        import mlflow

        raise RegistrationError(redact(
            f"register: training run {run_id} (from {run_file}) is not in the tracking store "
            f"{mlflow.get_tracking_uri()} ({exc.error_code}); run.json says it was logged to "
            f"{info.get('tracking_uri')!r}: set MLFLOW_TRACKING_URI to that store and retry"
        )) from exc
    if run.info.status != "FINISHED":
        raise RegistrationError(
            f"register: refused; training run {run_id} is {run.info.status} in MLflow, not FINISHED "
            "(a FAILED or diverged run is never registered or promoted)"
        )
    if str(run.data.tags.get("diverged", "")).lower() in ("1", "true", "yes"):
        raise RegistrationError(f"register: refused; training run {run_id} is tagged diverged")
    return TrainingRun(run_id=run_id, status=run.info.status, experiment_id=run.info.experiment_id, run_json=info)


def read_metrics(metrics_file: Path, primary_metric: str) -> dict[str, float]:
    """The evaluation step's numbers; a non-finite primary metric means a diverged generator (refused)."""
    if not metrics_file.is_file():
        raise RegistrationError(f"register: {metrics_file} is missing; run `productgan evaluate` first")
    metrics = flatten_numbers(read_json(metrics_file), finite=False)
    value = metrics.get(primary_metric)
    if value is not None and not math.isfinite(value):
        raise RegistrationError(
            f"register: refused; {metrics_file} has {primary_metric} = {value}: the generator diverged"
        )
    return metrics


def lineage_tags(
    generator_dir: Path, run: TrainingRun, metrics: dict[str, float], metrics_file: Path
) -> dict[str, str]:
    """Where this version came from: data, params, code, training run, and its evaluation."""
    cfg = read_json(generator_dir / "generator.json")
    meta = cfg.get("meta") or {}
    from productgan.params import load_params

    tags = {
        "dataset_version": str(meta.get("dataset_version") or dataset_version("data.dvc") or "unknown"),
        "params_hash": str(meta.get("params_hash") or model_params_hash(load_params())),
        "git_commit": str(meta.get("git_commit") or git_commit() or "unknown"),
        "code_version": str(meta.get("code_version") or model_code_version()),  # what the retrain check compares
        "training_run_id": run.run_id,
        "training_status": run.status,
        "generator_sha256": sha256_file(generator_dir / "generator.safetensors"),
        "categories": json.dumps(cfg.get("categories") or []),
        "metrics_file": str(metrics_file),
        "metrics_sha256": sha256_file(metrics_file),
    }
    if meta.get("recipe"):
        tags["recipe"] = str(meta["recipe"])
    if meta.get("step") is not None:
        tags["train_step"] = str(meta["step"])
    for key in sorted(metrics)[:MAX_METRIC_TAGS]:
        tags[f"metric.{key}"] = repr(metrics[key])
    return tags


def find_registered(client: Any, model_name: str, tags: dict[str, str]) -> str | None:
    """An existing version of the same generator from the same training run (a re-run of register), if any."""
    from mlflow.exceptions import MlflowException

    query = (
        f"name='{model_name}' and tags.training_run_id='{tags['training_run_id']}' "
        f"and tags.generator_sha256='{tags['generator_sha256']}'"
    )
    try:
        found = client.search_model_versions(query)
    except MlflowException:  # a store without tag filters: filter here
        found = [
            v for v in client.search_model_versions(f"name='{model_name}'")
            if all(v.tags.get(k) == tags[k] for k in ("training_run_id", "generator_sha256"))
        ]
    versions = sorted(int(v.version) for v in found)
    return str(versions[0]) if versions else None


def _staged_generator(generator_dir: Path, into: Path) -> Path:
    """Only the weights and config go into the model (not grids, run.json or anything else in the folder)."""
    out = into / "generator"
    out.mkdir(parents=True)
    for name in GENERATOR_FILES:
        shutil.copy2(generator_dir / name, out / name)
    return out


def _staged_code(into: Path) -> Path:
    import productgan

    src = Path(productgan.__file__).resolve().parent
    dst = into / "code" / "productgan"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*CODE_EXCLUDE))
    return dst


def _expected_files(generator: Path, code: Path) -> dict[str, int | None]:
    """Where log_model puts what we staged (path in the model -> size), and the MLmodel that loads it."""
    files: dict[str, int | None] = {"MLmodel": None}
    files.update({f"artifacts/{MODEL_ARTIFACT}/{p.name}": p.stat().st_size for p in generator.iterdir()})
    files.update({f"code/{code.name}/{p.relative_to(code).as_posix()}": p.stat().st_size
                  for p in code.rglob("*") if p.is_file()})
    return files


def _stored_files(model_uri: str) -> dict[str, int | None]:
    """Every file the artifact store holds under ``model_uri`` (path -> size, None where it gives none)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(model_uri)
    found: dict[str, int | None] = {}
    folders: list[str | None] = [None]
    while folders:
        for info in repo.list_artifacts(folders.pop()):
            if info.is_dir:
                folders.append(info.path)
            else:
                found[info.path] = info.file_size
    return found


def check_upload(model_uri: str, expected: dict[str, int | None]) -> None:
    """Refuse to register a model whose files did not all reach the artifact store whole."""
    stored = _stored_files(model_uri)
    bad = sorted(p for p, size in expected.items()
                 if p not in stored or None not in (size, stored[p]) and stored[p] != size)
    if bad:
        raise RegistrationError(
            f"register: the artifact store holds {len(expected) - len(bad)} of the model's {len(expected)} files "
            f"whole (missing or cut short: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}); nothing was "
            "registered. Check the artifact store behind the tracking server (S3/MinIO) and run register again."
        )


def log_and_register(model_name: str, generator_dir: Path, tags: dict[str, str]) -> tuple[str, str]:
    """Log the pyfunc model into the active run, check that every file reached the artifact store, and only
    then register it as a new version (a version never points at missing files); returns (version, model_uri)."""
    import mlflow

    from productgan.serve.pyfunc import input_example, model_signature

    with tempfile.TemporaryDirectory(prefix="productgan-register-") as tmp:
        generator, code = _staged_generator(generator_dir, Path(tmp)), _staged_code(Path(tmp))
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(MODEL_CODE),
            artifacts={MODEL_ARTIFACT: str(generator)},
            code_paths=[str(code)],
            signature=model_signature(),
            input_example=input_example(),
            pip_requirements=pip_requirements(),
            metadata={"productgan": {k: tags[k] for k in ("training_run_id", "generator_sha256", "dataset_version")}},
        )
        check_upload(info.model_uri, _expected_files(generator, code))
    mv = mlflow.register_model(info.model_uri, model_name, tags=tags)
    return str(mv.version), info.model_uri
