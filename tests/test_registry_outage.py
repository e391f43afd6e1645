"""Register when the tracking server or the S3 store behind it fails: a clear message, nothing registered half,
no registered version pointing at missing artifacts, and the same command completes once they are back.
Real `mlflow server` processes (SQLite backend, artifacts proxied to moto's S3), stopped and restarted here."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from registry_helpers import REPO, fake_scorer, make_candidate, server_client_env
from servers import MlflowServer, S3Server

from productgan.registry import promote as promotion
from productgan.registry import register as register_module
from productgan.registry.config import RegisterConfig
from productgan.registry.log import RegistrationError
from productgan.registry.register import register_generator

pytestmark = pytest.mark.slow

CANARY = "Canary-Pw-9d2b71"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One S3 store and one tracking server for the module; each test leaves both running (each uses its own
    model name)."""
    with contextlib.ExitStack() as stack:  # each server is stopped even when stopping the other one fails
        s3 = S3Server().start()
        stack.callback(s3.stop)
        s3.create_bucket()
        root = tmp_path_factory.mktemp("server")
        server = MlflowServer(root, f"sqlite:///{root}/mlflow.db", s3.endpoint)
        stack.callback(server.stop)
        yield s3, server.start()


@pytest.fixture()
def client_env(monkeypatch, tmp_path):
    server_client_env(monkeypatch, tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # as `productgan register` caps them (3), shorter
    (tmp_path / "prepared").mkdir()
    return monkeypatch


def _versions(client, name: str) -> list:
    return client.search_model_versions(f"name='{name}'")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_with_the_tracking_server_down(stores, client_env, tmp_path):
    """The CLI says in one clear line that the server does not answer (its URI redacted), writes nothing, and
    the same command registers once the server is back."""
    _, server = stores
    uri = server.url.replace("http://", f"http://admin:{CANARY}@")  # credentials in the URI, as in production
    client_env.setenv("MLFLOW_TRACKING_URI", uri)
    gen, metrics = make_candidate(tmp_path / "c1", {"fd_domain": 4.0, "class_accuracy": 0.8})
    server.stop()

    cmd = [sys.executable, "-m", "productgan", "register", "--generator", str(gen), "--metrics", str(metrics),
           "--out", str(tmp_path / "register.json"), "--model-name", "server-down"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "does not answer (connection refused)" in out and "nothing was written" in out, out
    assert "Traceback" not in out, out
    assert CANARY not in out and f"http://***@127.0.0.1:{server.port}" in out, out
    assert not (tmp_path / "register.json").exists()

    server.start()  # same port, same database
    from productgan.registry import store

    assert not _versions(store.client(), "server-down")  # nothing registered half
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "version 1: promoted" in res.stdout and CANARY not in res.stdout + res.stderr


def test_artifact_store_stops_during_the_upload(stores, client_env, tmp_path):
    """moto stops after a few of the model's files reached S3: register fails cleanly and registers no version
    (none points at missing files); with S3 back, the same call registers a complete model."""
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

    s3, server = stores
    client_env.setenv("MLFLOW_TRACKING_URI", server.url)
    cfg = RegisterConfig(model_name="s3-outage")
    gen, metrics = make_candidate(tmp_path / "c1", {"fd_domain": 4.0, "class_accuracy": 0.8})
    upload = HttpArtifactRepository.log_artifact
    uploaded: list[str] = []

    def upload_then_stop_s3(self, local_file, artifact_path=None):
        upload(self, local_file, artifact_path)
        uploaded.append(local_file)
        if len(uploaded) == 3:
            s3.stop()

    client_env.setattr(HttpArtifactRepository, "log_artifact", upload_then_stop_s3)
    with pytest.raises(RegistrationError) as failed:
        register_generator(gen, metrics, data_dir=tmp_path / "prepared", cfg=cfg, scorer=fake_scorer)
    message = str(failed.value)
    assert "Nothing was registered" in message and "artifact store" in message, message
    assert len(uploaded) == 3

    from productgan.registry import store

    client = store.client()
    assert not _versions(client, cfg.model_name)  # no version points at the half-uploaded model

    client_env.setattr(HttpArtifactRepository, "log_artifact", upload)
    s3.start()  # the store is back, with what it held
    result = register_generator(gen, metrics, data_dir=tmp_path / "prepared", cfg=cfg, scorer=fake_scorer)
    assert (result["version"], result["decision"]) == ("1", "promoted")
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{cfg.model_name}@champion/artifacts/generator",
                                                     dst_path=str(tmp_path / "dl")))
    for name in ("generator.safetensors", "generator.json"):
        assert _sha256(local / name) == _sha256(gen / name)


def test_tracking_server_stops_after_the_version_is_created(stores, client_env, tmp_path):
    """The version exists, its decision does not: the message says so, and the same call decides it later
    (reusing the version; no second version, no lost decision)."""
    _, server = stores
    client_env.setenv("MLFLOW_TRACKING_URI", server.url)
    cfg = RegisterConfig(model_name="mid-outage")
    gen, metrics = make_candidate(tmp_path / "c1", {"fd_domain": 4.0, "class_accuracy": 0.8})
    decide = register_module.promote_new_version

    def stop_server_then_decide(*args, **kwargs):
        server.stop()
        return decide(*args, **kwargs)

    client_env.setattr(register_module, "promote_new_version", stop_server_then_decide)
    with pytest.raises(RegistrationError) as failed:
        register_generator(gen, metrics, data_dir=tmp_path / "prepared", cfg=cfg, scorer=fake_scorer)
    assert f"Version 1 of {cfg.model_name!r} is registered" in str(failed.value)
    assert "Run the same command again" in str(failed.value)

    client_env.setattr(register_module, "promote_new_version", decide)
    server.start()
    result = register_generator(gen, metrics, data_dir=tmp_path / "prepared", cfg=cfg, scorer=fake_scorer)
    assert (result["version"], result["decision"], result["reused"]) == ("1", "promoted", True)
    from productgan.registry import store

    client = store.client()
    assert [v.version for v in _versions(client, cfg.model_name)] == ["1"]
    assert promotion.aliases(client, cfg.model_name)["champion"] == "1"


def test_tracking_server_stops_after_the_decision_keeps_the_register_runs_records(stores, client_env, tmp_path):
    """The register run's own records (its settings, the decision's summary, its end) go through the tracker
    train uses: a server that stops right after the decision loses none of them; `sync-run`'s sender completes
    the run once it answers."""
    from productgan import tracking

    _, server = stores
    client_env.setenv("MLFLOW_TRACKING_URI", server.url)
    cfg = RegisterConfig(model_name="after-decision")
    gen, metrics = make_candidate(tmp_path / "c1", {"fd_domain": 4.0, "class_accuracy": 0.8})
    decide = register_module.promote_new_version

    def decide_then_stop_the_server(*args, **kwargs):
        decided = decide(*args, **kwargs)
        server.stop()
        return decided

    client_env.setattr(register_module, "promote_new_version", decide_then_stop_the_server)
    try:
        result = register_generator(gen, metrics, data_dir=tmp_path / "prepared", cfg=cfg, scorer=fake_scorer,
                                    pending_root=tmp_path / "cache" / tracking.PENDING_DIR)
    finally:
        server.start()
    assert (result["version"], result["decision"]) == ("1", "promoted")
    kept = result["mlflow_pending"]
    assert "tags" in kept["missing"] and "its end status (FINISHED)" in kept["missing"], kept
    assert kept["command"] == tracking.SYNC_COMMAND

    assert tracking.sync_journals(tmp_path / "cache")
    from productgan.registry import store

    run = store.client().get_run(result["register_run_id"])
    assert run.data.tags["promotion.decision"] == "promoted" and run.data.tags["model_version"] == "1"
    assert run.data.params["register.model_name"] == "after-decision" and run.info.status == "FINISHED"
    assert run.data.metrics["challenger.fd_domain"] == 4.0
    assert not tracking.pending_journals(tmp_path / "cache")
