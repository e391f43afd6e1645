"""An evicted train loses one checkpoint interval, not its work: the whole pipeline under kfp.local, its train
process killed once (SIGKILL, as a node that disappears), the train task retried (``set_retry``) and resumed from
the checkpoint on the stable checkpoint folder (on a cluster: the run's PVC) — not from step 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from productgan.gan.checkpoint import list_checkpoints, load_latest

pytestmark = pytest.mark.slow

STEPS, EVERY, KILL_AT = 100, 5, 10


def _train_processes(marker: str) -> list[int]:
    """Pids of `python -m productgan train ... --resume` processes whose arguments mention ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "productgan" in args and "train" in args and "--resume" in args and any(marker in a for a in args):
            found.append(int(entry.name))
    return found


def _kill_once(work: Path, done: threading.Event, killed: list[int]) -> None:
    """Wait for a checkpoint at step >= KILL_AT, then SIGKILL the train process (once)."""
    while not done.is_set():
        for folder in (work / "checkpoints").glob("*/checkpoints/train"):
            if any(step >= KILL_AT for step, _ in list_checkpoints(folder)):
                for pid in _train_processes(str(work)):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                if killed:
                    return
        time.sleep(0.02)


def test_killed_train_is_retried_and_resumes_from_its_checkpoint(tmp_path, cli_env, fmnist_dir):
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    env = {**cli_env, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "PRODUCTGAN_FASHION_MNIST": str(fmnist_dir),
           "PRODUCTGAN_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "productgan", "pipeline", "run-local", "--workdir", str(work), "--per-category", "10",
           "--param", f"train.steps={STEPS}", "--param", f"train.checkpoint_every={EVERY}",
           "--param", "train.sync_every=1", "--param", "pipeline.retry_backoff=0s"]
    done, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_once, args=(work, done, killed), daemon=True)
    watcher.start()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    finally:
        done.set()
        watcher.join(timeout=5)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-8000:]
    assert killed, "the train process was never killed (it finished before a checkpoint at step >= 10?)"
    assert "trained, evaluated and registered" in res.stdout

    # the retried train went on from the last checkpoint before the kill, in the same folder and MLflow run
    (folder,) = (work / "checkpoints").glob("*/checkpoints/train")  # <run id>/: the train step's working folder
    resumed = [line for line in log.splitlines() if "resumed from" in line]
    assert resumed, log[-8000:]
    step = int(resumed[0].rsplit("at step", 1)[1].split()[0])
    assert step >= KILL_AT and step % EVERY == 0, resumed[0]
    assert "checkpoints/train/ckpt-" in resumed[0]
    assert folder.parent.parent.name not in ("", "{{$.pipeline_job_uuid}}")  # the run's own folder
    _, final = load_latest(folder)
    assert final["step"] == STEPS
    runs = MlflowClient(f"sqlite:///{db}").search_runs(
        [e.experiment_id for e in MlflowClient(f"sqlite:///{db}").search_experiments()],
        filter_string="tags.`productgan.step` = 'train'")
    assert [r.info.run_id for r in runs] == [final["run_id"]]
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags.get("resumed_at_step") == str(step)
