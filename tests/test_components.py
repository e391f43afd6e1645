"""Component bodies run for real (what a pod runs), outside any pipeline: ingest's dataset version."""

from __future__ import annotations

import tempfile
import types
from pathlib import Path

import pytest

from components import ingest
from components.runtime import is_dvc_version, metrics_table
from pipelines.product_gan import params_argument
from productgan.lineage import dataset_version
from productgan.metrics.flatten import flatten_numbers
from productgan.redact import redact

REPO = Path(__file__).resolve().parents[1]


def _artifact(path: Path) -> types.SimpleNamespace:
    return types.SimpleNamespace(path=str(path), metadata={})


def test_ingest_reports_the_version_data_dvc_records(tmp_path, fmnist_dir, monkeypatch):
    """The pipeline and `make run` agree on the dataset version: the DVC hash of the ingested folder."""
    monkeypatch.setenv("PRODUCTGAN_FASHION_MNIST", str(fmnist_dir))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    recorded = dataset_version(REPO / "data.dvc")
    assert is_dvc_version(recorded)
    params = params_argument({"ingest": {"source": "fashion-mnist"}})

    data = _artifact(tmp_path / "data")
    out = ingest.ingest(params=params, dataset_version="", data=data)
    assert out.dataset_version == recorded
    assert data.metadata["dataset_version"] == recorded and data.metadata["source"] == "fashion-mnist"
    assert (tmp_path / "data" / "manifest.json").is_file()

    # pinned to the version the source holds: fine; to another one: the run stops and says why
    assert ingest.ingest(params=params, dataset_version=recorded, data=_artifact(tmp_path / "d2")).dataset_version
    with pytest.raises(ValueError, match=r"now holds dataset version .* but this run asked for 0{32}\.dir"):
        ingest.ingest(params=params, dataset_version="0" * 32 + ".dir", data=_artifact(tmp_path / "d3"))
    # a git revision is recorded, not checked
    assert ingest.ingest(params=params, dataset_version="v1.2", data=_artifact(tmp_path / "d4")).dataset_version
    assert not list(scratch.iterdir())  # each step's working directory is removed, failed or not


def test_a_failing_step_names_itself_and_how_to_reproduce(tmp_path):
    from components.runtime import StepError

    with pytest.raises(StepError, match=r"step ingest: `productgan ingest` exited with code \d+.*Reproduce outside"):
        ingest.ingest(params=params_argument({"ingest": {"source": str(tmp_path / "missing")}}), dataset_version="",
                      data=_artifact(tmp_path / "data"))


def test_uris_are_printed_without_credentials():
    assert redact("http://admin:s3cret@mlflow:5000/x") == "http://***@mlflow:5000/x"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def test_metrics_helpers():
    nested = {"fd_domain": 1.5, "kid": {"mean": 0.1, "std": 0.01}, "ok": True, "name": "x", "nan": float("nan")}
    assert flatten_numbers(nested) == {"fd_domain": 1.5, "kid.mean": 0.1, "kid.std": 0.01}
    assert "| kid.mean | 0.1 |" in metrics_table(flatten_numbers(nested))




def test_an_unwritable_checkpoint_volume_is_named_with_the_fix(tmp_path, monkeypatch):
    """The image runs as a non-root user and a fresh volume's root often belongs to root: the train step says so
    and how to fix it. (Tests run as root, who writes anywhere, so the denial is simulated.)"""
    import pytest

    import components.runtime as runtime

    assert runtime.require_writable(tmp_path / "a" / "train", "train").is_dir()

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "b"))

    monkeypatch.setattr(runtime.tempfile, "NamedTemporaryFile", denied)
    with pytest.raises(runtime.StepError, match="cannot write to .*fsGroup"):
        runtime.require_writable(tmp_path / "b", "train")
