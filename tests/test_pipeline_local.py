"""The whole Kubeflow pipeline on this machine (kfp.local, tiny configuration), twice: the first run trains,
evaluates and registers; the second finds the same data, code and params already trained and ends early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

COMMIT = "feedc0de" * 5  # the code version both runs record (as the image's PRODUCTGAN_GIT_COMMIT would)


def _run(workdir: Path, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "productgan", "pipeline", "run-local", "--workdir", str(workdir),
           "--per-category", "20"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def _run_dir(out: str) -> Path:
    (line,) = [x for x in out.splitlines() if x.strip().startswith("artifacts:")]
    return Path(line.split(":", 1)[1].strip())


def test_run_local_trains_registers_then_ends_early(tmp_path, cli_env, fmnist_dir):
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    env = {**cli_env, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "PRODUCTGAN_GIT_COMMIT": COMMIT,
           "PRODUCTGAN_FASHION_MNIST": str(fmnist_dir), "PRODUCTGAN_CACHE": str(tmp_path / "cache")}
    work = tmp_path / "work"

    first = _run(work, env)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-6000:]
    assert "trained, evaluated and registered" in first.stdout
    run = _run_dir(first.stdout)
    version = json.loads((run / "ingest" / "executor_output.json").read_text())["parameterValues"]["dataset_version"]
    assert version.endswith(".dir")
    assert (run / "train" / "generator" / "generator.safetensors").is_file()
    assert (run / "train" / "generator" / "run.json").is_file()
    assert (run / "evaluate" / "evaluation" / "metrics.json").is_file()
    scores = json.loads((run / "evaluate" / "evaluation" / "metrics.json").read_text())
    for key in ("fid20", "fid_inf", "fid20_per_category", "fid_meta"):  # the Inception metrics in every run
        assert key in scores, key
    assert scores["fid_meta"]["n_generated"] == 20 and scores["fid_meta"]["real_stats_cache"] == "miss"
    report = (run / "evaluate" / "report").read_text()
    assert "data:image/png;base64," in report  # the sample grid, inline for the KFP UI
    metrics = json.loads((run / "evaluate" / "executor_output.json").read_text())
    assert metrics["artifacts"]["metrics"]["artifacts"][0]["metadata"]  # numbers for the KFP UI
    assert "registration" in (run / "register" / "decision").read_text()

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (mv,) = client.search_model_versions("name = 'product-gan'")
    assert mv.tags["dataset_version"] == version and mv.tags["git_commit"] == COMMIT
    assert client.get_model_version_by_alias("product-gan", "champion").version == mv.version

    second = _run(work, env)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-6000:]
    again = _run_dir(second.stdout)
    # if this fails, the summary names the lineage tag that differs (e.g. params_hash computed another way)
    assert "ended early: nothing new" in second.stdout, (again / "retrain-check" / "summary").read_text()
    assert again != run and not (again / "train").exists() and not (again / "register").exists()
    assert "**Nothing to do**" in (again / "retrain-check" / "summary").read_text()
    assert len(client.search_model_versions("name = 'product-gan'")) == 1


def test_run_local_sets_the_steps_environment_for_its_run_only(tmp_path, monkeypatch):
    """kfp.local's subprocess steps read PYTHONPATH, MLFLOW_TRACKING_URI and PRODUCTGAN_CACHE from this
    process; each run gets its own workdir's, and the caller's environment is as it was afterwards."""
    import os

    import pipelines.local
    from pipelines.product_gan import default_params_text

    for key in ("MLFLOW_TRACKING_URI", "PRODUCTGAN_CACHE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PYTHONPATH", "/caller/path")
    seen = []

    def fake_run(work, root, runner, text, arguments, image, tracking_uri):
        seen.append({k: os.environ.get(k) for k in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "PRODUCTGAN_CACHE")})
        return pipelines.local.LocalRun(work, root, tracking_uri, True, "")

    monkeypatch.setattr(pipelines.local, "_run", fake_run)
    for name in ("a", "b"):
        pipelines.local.run_local(tmp_path / name, default_params_text(), source=str(tmp_path / "photos"))
    for name, env in zip(("a", "b"), seen, strict=True):
        assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / name / 'mlflow.db'}"
        assert env["PRODUCTGAN_CACHE"] == str(tmp_path / name / "cache")
        assert env["PYTHONPATH"].split(os.pathsep) == [str(pipelines.local.REPO), "/caller/path"]
    assert os.environ["PYTHONPATH"] == "/caller/path"
    assert "MLFLOW_TRACKING_URI" not in os.environ and "PRODUCTGAN_CACHE" not in os.environ
