"""Helpers for the registry tests: real training runs, tiny generators with known scores, a fake scorer.

Each generator carries its test scores in ``generator.json`` meta (``test_scores``). The fake scorer reads
them back from whatever generator folder it is given -- the local challenger or the champion downloaded from
the registry -- so a test knows exactly what re-scoring must find, without the evaluation library.
"""

from __future__ import annotations

import json
from pathlib import Path

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
        "run_id": run.info.run_id, "tracking_uri": mlflow.get_tracking_uri(),
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
