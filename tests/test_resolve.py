"""The one generator resolver (productgan.resolve): a generator folder, a folder holding one, the config file,
or an MLflow URI (downloaded from a real SQLite tracking store here) -> a local generator folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from productgan.gan.export import load_generator
from productgan.resolve import find_generator_dir, is_model_uri, local_generator_dir, resolve_generator_dir


def test_folders_nested_folders_and_the_config_file_resolve(tiny_generator_dir, tmp_path):
    assert resolve_generator_dir(tiny_generator_dir) == tiny_generator_dir
    assert resolve_generator_dir(tiny_generator_dir / "generator.json") == tiny_generator_dir
    outer = tiny_generator_dir.parent
    assert find_generator_dir(outer) == tiny_generator_dir  # a downloaded pyfunc model holds it below
    with pytest.raises(FileNotFoundError, match="not an MLflow URI"):
        resolve_generator_dir(tmp_path / "nowhere")
    assert is_model_uri("models:/product-gan@champion") and is_model_uri("runs:/abc/generator")
    assert is_model_uri("s3://bucket/model") and not is_model_uri(str(tmp_path))


def test_mlflow_uris_download_into_a_folder_removed_after_use(tiny_generator_dir, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    exp = client.create_experiment("resolve-test", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(exp).info.run_id
    client.log_artifacts(run_id, str(tiny_generator_dir), "model/artifacts/generator")

    kept = resolve_generator_dir(f"runs:/{run_id}/model", tmp_path / "dst")
    assert kept.is_relative_to(tmp_path / "dst") and (kept / "generator.safetensors").is_file()
    with local_generator_dir(f"runs:/{run_id}/model") as folder:
        generator, config = load_generator(folder)
        assert config.latent_dim == 32
    assert not Path(folder).exists()  # the temporary download is gone
    with pytest.raises(FileNotFoundError, match="no generator"):
        resolve_generator_dir(f"runs:/{run_id}/nothing", tmp_path / "dst2")
