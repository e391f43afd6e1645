"""Training outlives the tracking server: a real `mlflow server` (SQLite backend, artifacts proxied to moto's S3)
that is stopped and started again mid-training, one that refuses connections from the start (then
`productgan sync-run`), one that accepts connections but never answers, and a run killed during an outage then
resumed. Training loses no step, checkpoints keep being written, and MLflow ends up with every step's metrics."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from servers import MlflowServer, S3Server
from train_helpers import small_prepared, tiny_params

from productgan import tracking
from productgan.gan.checkpoint import list_checkpoints, load_latest
from productgan.gan.trainer import Trainer
from productgan.io import read_json

pytestmark = pytest.mark.slow

CANARY = "Canary-Train-5e1f08"
ENV_PREFIXES = ("MLFLOW_", "AWS_")


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    try:
        server.create_bucket()
        yield server
    finally:
        server.stop()


@pytest.fixture()
def mlflow_server(s3, tmp_path):
    """A tracking server of this test, not started yet (its port is fixed: a stopped server refuses
    connections there); stopped after the test whatever happened."""
    server = MlflowServer(tmp_path / "server", f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}", s3.endpoint)
    yield server
    server.stop()


@pytest.fixture()
def client_env(monkeypatch):
    """No MLflow or AWS settings of the machine; train's own caps on MLflow's HTTP retries are what count
    (set, then deleted: monkeypatch restores the variables train sets)."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIXES):
            monkeypatch.delenv(key)
    for key in tracking.HTTP_DEFAULTS:
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return monkeypatch


@pytest.fixture()
def small_data(tmp_path, fmnist_small):
    return small_prepared(tmp_path, fmnist_small)


def _uri(server: MlflowServer) -> str:
    return server.url.replace("http://", f"http://trainer:{CANARY}@")  # credentials in the URI, as in production


def _client(server: MlflowServer):
    from mlflow import MlflowClient

    return MlflowClient(server.url)


def _logged_steps(server: MlflowServer, run_id: str, key: str = "loss_d") -> list[int]:
    return sorted(m.step for m in _client(server).get_metric_history(run_id, key))


def _artifacts(server: MlflowServer, run_id: str, path: str) -> list[str]:
    return [f.path for f in _client(server).list_artifacts(run_id, path)]


def test_training_goes_on_while_the_server_is_stopped_and_sends_everything_when_it_is_back(
    tmp_path, client_env, mlflow_server, small_data, monkeypatch, capsys
):
    """The server stops before step 4 and starts again after step 8: no step is lost, the checkpoint of step 8
    is written during the outage, and the run in MLflow holds the metrics of all 12 steps, the sample grids,
    the generator files and status FINISHED."""
    client_env.setenv("MLFLOW_TRACKING_URI", _uri(mlflow_server.start()))
    monkeypatch.setattr(tracking, "RETRY_EVERY_S", 0.0)  # ask the server again at every call (the test is short)
    params = tiny_params(tmp_path, steps=12, log_every=1, sample_every=4, checkpoint_every=4)
    trainer = Trainer(params, small_data, tmp_path / "gen")
    step_once = trainer.train_step
    checkpoints_during_outage: list[int] = []

    def train_step(step: int) -> None:
        if step == 3:
            mlflow_server.stop()
        if step == 8:  # the checkpoint of step 8 has been written while the server was down
            checkpoints_during_outage.extend(s for s, _ in list_checkpoints(params.checkpoint_dir))
            mlflow_server.start()
        step_once(step)

    monkeypatch.setattr(trainer, "train_step", train_step)
    result = trainer.run()

    assert result.status == "FINISHED" and result.step == 12, result.message
    assert 8 in checkpoints_during_outage
    err = capsys.readouterr().err
    assert "does not answer (connection refused); the step goes on" in err, err
    assert "answers again: sent the" in err and "WARNING" not in err, err
    assert _logged_steps(mlflow_server, result.run_id) == list(range(1, 13))
    run = _client(mlflow_server).get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["recipe"] == "default"
    assert {"generator/generator.safetensors", "generator/generator.json"} <= set(
        _artifacts(mlflow_server, result.run_id, "generator"))
    grids = [p for p in _artifacts(mlflow_server, result.run_id, "images") if p.endswith(".png")]
    assert {int(p.split("+step+")[1].split("+")[0]) for p in grids} == {4, 8, 12}  # 12: also the final grid
    run_file = read_json(tmp_path / "gen" / "run.json")
    assert run_file["run_id"] == result.run_id and "mlflow_pending" not in run_file
    assert run_file["tracking_uri"] == f"http://***@127.0.0.1:{mlflow_server.port}"
    assert not list((Path(params.checkpoint_dir) / tracking.PENDING_DIR).glob("*"))  # nothing kept any more
    assert CANARY not in err and CANARY not in (tmp_path / "gen" / "run.json").read_text()


def _write_params(root: Path, **train) -> None:
    tiny = {"g_channels": 4, "d_channels": 4}
    doc = {"train": {"recipe": "default", "max_minutes": None, "steps": 6, "batch_size": 4, "checkpoint_every": 2,
                     "sync_every": 1, "log_every": 1, "sample_every": 3, "grid_columns": 2,
                     **tiny, **train}}
    (root / "params.yaml").write_text(yaml.safe_dump(doc))


def _cli(cwd: Path, env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "productgan", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture()
def env(cli_env):
    e = {k: v for k, v in cli_env.items() if not k.startswith(ENV_PREFIXES)}
    return {**e, "PYTHONUNBUFFERED": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def test_server_down_at_start_then_sync_run_completes_the_run(tmp_path, env, mlflow_server, small_data):
    """Connection refused from the first call: train finishes, says what MLflow lacks and the command that
    sends it; register refuses the incomplete run with that command; `productgan sync-run` (server back)
    creates the run with every step and completes run.json."""
    _write_params(tmp_path)
    env = {**env, "MLFLOW_TRACKING_URI": _uri(mlflow_server)}  # not started: connection refused
    res = _cli(tmp_path, env, "train", "--data", str(small_data), "--out", "gen")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "does not answer (connection refused); the step goes on" in out, out
    assert "WARNING: the MLflow run is not complete" in out and "the run itself" in out, out
    assert "productgan sync-run --checkpoints checkpoints/train" in out, out
    assert "Traceback" not in out and CANARY not in out, out
    run_file = read_json(tmp_path / "gen" / "run.json")
    assert run_file["status"] == "FINISHED" and run_file["run_id"] is None
    assert run_file["mlflow_pending"]["command"] == "productgan sync-run --checkpoints checkpoints/train"
    assert "(steps 1-6)" in run_file["mlflow_pending"]["missing"]
    assert (tmp_path / "gen" / "generator.safetensors").is_file()
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints" / "train")] == [4, 6]

    mlflow_server.start()
    (tmp_path / "metrics.json").write_text(json.dumps({"fd_domain": 1.0}))
    refused = _cli(tmp_path, env, "register", "--generator", "gen", "--metrics", "metrics.json",
                   "--model-name", "outage-train")
    assert refused.returncode == 1 and "not complete in MLflow" in refused.stderr, refused.stderr
    assert "productgan sync-run --checkpoints checkpoints/train" in refused.stderr

    synced = _cli(tmp_path, env, "sync-run")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "is complete in MLflow" in synced.stderr and CANARY not in synced.stdout + synced.stderr
    run_file = read_json(tmp_path / "gen" / "run.json")
    assert "mlflow_pending" not in run_file and run_file["run_id"]
    assert run_file["tracking_uri"] == f"http://***@127.0.0.1:{mlflow_server.port}"
    run = _client(mlflow_server).get_run(run_file["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["steps"] == "6"
    assert run.data.tags["recipe"] == "default"
    assert _logged_steps(mlflow_server, run.info.run_id) == list(range(1, 7))
    assert "generator/generator.safetensors" in _artifacts(mlflow_server, run.info.run_id, "generator")
    assert not list((tmp_path / "checkpoints" / "train" / tracking.PENDING_DIR).glob("*"))
    again = _cli(tmp_path, env, "sync-run")
    assert again.returncode == 0 and "nothing to send" in again.stderr


@contextlib.contextmanager
def _silent_server():
    """A TCP port that accepts connections and never answers (a hung server or a black-holed proxy)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_a_server_that_never_answers_costs_seconds_not_minutes_per_call(tmp_path, client_env, small_data,
                                                                           capsys):
    """MLflow would wait 120 s per attempt and retry 7 times for every call; train caps it (one attempt,
    HTTP_DEFAULTS' timeout) and then keeps its calls without asking the server at each one."""
    with _silent_server() as url:
        client_env.setenv("MLFLOW_TRACKING_URI", url)
        params = tiny_params(tmp_path, steps=4, log_every=1, sample_every=2, checkpoint_every=2)
        result = Trainer(params, small_data, tmp_path / "gen").run()
    assert result.status == "FINISHED" and result.step == 4
    assert {k: os.environ[k] for k in tracking.HTTP_DEFAULTS} == tracking.HTTP_DEFAULTS
    err = capsys.readouterr().err
    assert f"does not answer (no answer in {tracking.HTTP_DEFAULTS['MLFLOW_HTTP_REQUEST_TIMEOUT']} s)" in err, err
    pending = read_json(tmp_path / "gen" / "run.json")["mlflow_pending"]
    assert "the run itself" in pending["missing"] and "(steps 1-4)" in pending["missing"]
    assert (tmp_path / "gen" / "generator.safetensors").is_file()


def test_killed_during_an_outage_then_resumed_sends_what_the_first_session_kept(tmp_path, env, mlflow_server,
                                                                                  small_data):
    """SIGKILL while the server is down: the kept calls are on disk; `train --resume` with the server back
    sends them first, so the one MLflow run holds every step of both sessions."""
    _write_params(tmp_path, steps=100000, checkpoint_every=4, sample_every=1000)
    env = {**env, "MLFLOW_TRACKING_URI": _uri(mlflow_server)}  # not started: connection refused
    ckpt = tmp_path / "checkpoints" / "train"
    with open(tmp_path / "first.txt", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "productgan", "train", "--data", str(small_data),
                                 "--out", "gen"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not any(s >= 8 for s, _ in list_checkpoints(ckpt)):
            assert proc.poll() is None, (tmp_path / "first.txt").read_text()
            assert time.monotonic() < deadline, "no checkpoint at step >= 8"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _, killed = load_latest(ckpt)
    k = killed["step"]
    assert killed["run_id"] is None and killed["tracking_journal"]

    mlflow_server.start()
    res = _cli(tmp_path, env, "train", "--data", str(small_data), "--out", "gen", "--resume", "--steps", str(k + 4))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "MLflow call(s) of an earlier session are kept" in out and "WARNING" not in out, out
    run_id = read_json(tmp_path / "gen" / "run.json")["run_id"]
    run = _client(mlflow_server).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["recipe"] == "default"
    assert set(_logged_steps(mlflow_server, run_id)) == set(range(1, k + 5))  # both sessions, every step
    assert len(_client(mlflow_server).search_runs([run.info.experiment_id])) == 1  # one run, not two
    assert CANARY not in out


def test_a_refused_call_is_dropped_and_a_torn_journal_line_ignored(tmp_path, client_env):
    """MLflow refusing a call (a param logged again with another value) is no outage: one warning, nothing kept,
    later calls go on. A journal whose last line was cut by a kill is read up to that line."""
    client_env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    said: list[str] = []
    tracker = tracking.Tracker(pending_root=tmp_path / "pending", say=said.append)
    assert tracker.start("exp", None, "run", {"recipe": "default"})
    tracker.log_params({"lr": 1})
    tracker.log_params({"lr": 2})  # INVALID_PARAMETER_VALUE: params are immutable
    tracker.log_metrics({"loss": 0.5}, 1)
    assert not tracker.pending and len(said) == 1 and "refused params" in said[0]
    assert tracker.close() is None

    folder = tmp_path / "pending" / "torn"
    folder.mkdir(parents=True)
    (folder / "ops.jsonl").write_text(json.dumps({"op": "tags", "tags": {"a": "1"}}) + '\n{"op": "metr')
    assert tracking.Journal(folder).ops == [{"op": "tags", "tags": {"a": "1"}}]


def test_evaluate_keeps_its_records_through_an_outage_and_sync_run_sends_them(tmp_path, env, mlflow_server,
                                                                              small_data):
    """evaluate logs onto the training run through the same tracker as train: with the server down it writes
    metrics.json, keeps the metrics and files beside its real-statistics cache, says so, and `productgan sync-run`
    sends them to the training run once the server answers."""
    _write_params(tmp_path)
    doc = yaml.safe_load((tmp_path / "params.yaml").read_text())
    doc["evaluate"] = {"metrics": ["fd_domain", "class_accuracy"], "n": 64, "batch_size": 64, "real_split": "train",
                       "classifier_steps": 20, "classifier_batch_size": 32, "grid_per_category": 2,
                       "cache_dir": "cache"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    env = {**env, "MLFLOW_TRACKING_URI": _uri(mlflow_server)}
    mlflow_server.start()
    trained = _cli(tmp_path, env, "train", "--data", str(small_data), "--out", "gen")
    assert trained.returncode == 0, trained.stderr
    run_id = read_json(tmp_path / "gen" / "run.json")["run_id"]
    mlflow_server.stop()

    res = _cli(tmp_path, env, "evaluate", "--generator", "gen", "--data", str(small_data), "--out", "eval")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert read_json(tmp_path / "eval" / "metrics.json")["fd_domain"] > 0  # the step's output, whatever MLflow does
    assert "does not answer (connection refused); the step goes on" in out and "productgan sync-run" in out, out
    assert "Traceback" not in out and CANARY not in out, out
    (journal,) = tracking.pending_journals(tmp_path / "cache")
    assert tracking.Journal(journal).meta["run_id"] == run_id

    mlflow_server.start()
    synced = _cli(tmp_path, env, "sync-run")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    run = _client(mlflow_server).get_run(run_id)
    scores = read_json(tmp_path / "eval" / "metrics.json")
    assert run.data.metrics["eval/fd_domain"] == pytest.approx(scores["fd_domain"])
    assert {"eval/metrics.json", "eval/grid.png"} <= set(_artifacts(mlflow_server, run_id, "eval"))
    assert not tracking.pending_journals(tmp_path / "cache") and run.info.status == "FINISHED"
