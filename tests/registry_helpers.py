"""Helpers for the registry tests: real training runs, tiny generators with known scores, a fake scorer.

Each generator carries its test scores in ``generator.json`` meta (``test_scores``). The fake scorer reads
them back from whatever generator folder it is given -- the local challenger or the champion downloaded from
the registry -- so a test knows exactly what re-scoring must find, without the evaluation library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CATEGORIES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def fake_scorer(generator_dir: Path, data_dir: Path) -> dict[str, float]:
    assert Path(data_dir).is_dir(), data_dir
    return json.loads((Path(generator_dir) / "generator.json").read_text())["meta"]["test_scores"]


def make_candidate(
    root: Path,
    scores: dict[str, float],
    *,
    seed: int = 0,
    status: str = "FINISHED",
    run_json_status: str | None = None,
    file_metrics: dict[str, float] | None = None,
) -> tuple[Path, Path]:
    """A trained-generator folder (weights, generator.json, run.json of a real MLflow run) and its metrics.json.

    ``status`` is the MLflow training run's end status, ``run_json_status`` what run.json claims (default: the
    same); ``file_metrics`` what the evaluation step wrote (default: ``scores``).
    """
    import mlflow
    import torch

    from productgan.gan.config import GeneratorConfig
    from productgan.gan.export import save_generator
    from productgan.gan.networks import build_generator
    from productgan.io import atomic_write_json
    from productgan.redact import redact
    from productgan.registry import store

    store.ensure_store()
    torch.manual_seed(seed)
    meta = {"test_scores": scores, "dataset_version": "abc123.dir", "params_hash": f"p{seed:04d}",
            "git_commit": "0123456789abcdef", "recipe": "baseline", "step": 3}
    cfg = GeneratorConfig(resolution=28, channels=1, latent_dim=32, base_channels=16, categories=CATEGORIES, meta=meta)
    folder = save_generator(build_generator(cfg).eval(), cfg, root / "generator")
    client = mlflow.MlflowClient()
    experiment = _experiment(client, "productgan-train")
    run = client.create_run(experiment, run_name=f"train-{seed}")
    client.log_metric(run.info.run_id, "loss_g", 1.0)
    client.set_terminated(run.info.run_id, status)
    atomic_write_json(folder / "run.json", {
        "run_id": run.info.run_id, "tracking_uri": redact(mlflow.get_tracking_uri()),  # as train writes it
        "experiment_id": experiment, "status": run_json_status or status,
    })
    metrics = root / "metrics.json"
    atomic_write_json(metrics, file_metrics if file_metrics is not None else scores)
    return folder, metrics


def _experiment(client, name: str) -> str:
    """The experiment's id, created if missing; concurrent callers may race to create it."""
    from mlflow.exceptions import MlflowException

    for _ in range(5):
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(name)
        except MlflowException:
            continue
    raise RuntimeError(f"could not create experiment {name}")


def start_together(root: Path, procs: list[subprocess.Popen]) -> None:
    """Wait until every worker wrote ``root/w<i>/ready``, let them all go at once, and wait for them."""
    deadline = time.monotonic() + 300
    while sum((root / f"w{i}" / "ready").exists() for i in range(len(procs))) < len(procs):
        failed = [p for p in procs if p.poll() not in (None, 0)]
        assert not failed, failed[0].stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "workers did not get ready"
        time.sleep(0.1)
    (root / "go").touch()
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out.decode()[-3000:]


def register_race(server_url: str, tmp_path: Path, name: str, monkeypatch: Any) -> None:
    """Eight processes register and promote at once against ``server_url``: exactly one champion, every
    version recorded and decided against the champion current at that moment, an unbroken history."""
    from productgan.registry import promote as promotion
    from productgan.registry import store
    from productgan.registry.lock import lock_model_name

    # (fd_domain, class_accuracy): fd 6.0 must end champion whatever the order; fd 5.0 is under the floor
    scores = [(10.0, 0.8), (9.0, 0.8), (12.0, 0.8), (7.0, 0.8), (7.1, 0.8), (5.0, 0.2), (6.0, 0.9), (30.0, 0.8)]
    env = {k: v for k, v in os.environ.items()}
    env.update(MLFLOW_TRACKING_URI=server_url, PYTHONPATH=str(REPO))
    procs = []
    for i, (fd, acc) in enumerate(scores):
        work = tmp_path / f"w{i}"
        work.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, str(TESTS / "registry_worker.py"), str(work), str(i), str(fd), str(acc), name],
            env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    start_together(tmp_path, procs)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
    c = store.client()
    results = [json.loads((tmp_path / f"w{i}" / "result.json").read_text()) for i in range(len(scores))]
    fd_of = {r["version"]: scores[i][0] for i, r in enumerate(results)}
    versions = {v.version: v for v in c.search_model_versions(f"name='{name}'")}
    assert sorted(versions, key=int) == [str(i) for i in range(1, 9)]  # every version recorded
    for v in versions.values():
        assert v.tags["promotion.decision"] in ("promoted", "kept") and v.tags["training_run_id"]
        recorded = json.loads(v.tags["promotion.scores"])
        assert recorded["challenger"]["fd_domain"] == fd_of[v.version]
        champ = v.tags["promotion.champion_version"]
        if champ != "none":  # compared with the real, current champion's score: no stale numbers
            assert recorded["champion"]["fd_domain"] == fd_of[champ]

    aliases = promotion.aliases(c, name)
    assert fd_of[aliases["champion"]] == 6.0
    promoted = [v for v in versions.values() if v.tags["promotion.decision"] == "promoted"]
    hist = [e["version"] for e in promotion.history(c, name)]
    assert hist[-1] == aliases["champion"] and len(hist) == len(promoted) == len(set(hist))
    # each promotion replaced exactly the champion before it: no lost update, no alias lost
    assert versions[hist[0]].tags["promotion.champion_version"] == "none"
    for before, after in zip(hist, hist[1:], strict=False):
        assert versions[after].tags["promotion.champion_version"] == before
    if "challenger" in aliases:
        assert versions[aliases["challenger"]].tags["promotion.decision"] == "kept"
    under_floor = next(v for v in versions.values() if fd_of[v.version] == 5.0)
    assert under_floor.tags["promotion.decision"] == "kept" and "floor" in under_floor.tags["promotion.reason"]
    assert not c.search_model_versions(f"name='{lock_model_name(name)}'")  # all lock tickets released


def server_client_env(monkeypatch: Any, tmp_path: Path) -> Any:
    """A client of a test's MLflow server: no AWS_/MLFLOW_ variable of this machine (artifacts go where the
    server says), no progress bars, working in ``tmp_path``."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "MLFLOW_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)
    return monkeypatch
