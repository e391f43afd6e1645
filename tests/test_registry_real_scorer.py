"""Promotion decided by the real scorer on two real generators: both trained by `productgan train` on real
Fashion-MNIST images (one for a few hundred steps, one for a single step), registered with `productgan register
--data`, and re-scored by the evaluation library. The better one wins; the worse one stays challenger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import FMNIST_CATEGORIES, write_prepared

from productgan.cli import cli
from productgan.registry import promote as promotion
from productgan.registry import store

pytestmark = pytest.mark.slow

NET = {"g_channels": 16, "d_channels": 16}
PARAMS = {
    "train": {
        "recipe": "baseline", "max_minutes": None, "batch_size": 32, "latent_dim": 32, "precision": "fp32",
        "checkpoint_every": 1000, "log_every": 50, "sample_every": 1000, "sync_every": 10, "grid_columns": 2,
        **NET,
    },
    # the evaluation step's own scorer at a tiny size: 200 generated vs the 200 real test images
    "evaluate": {"metrics": ["fd_domain", "class_accuracy"], "n": 200, "batch_size": 200, "classifier_steps": 150,
                 "classifier_batch_size": 64, "grid_per_category": 2},
    # the rule under test is the ordering by the primary metric; tiny generators do not reach the usual floor
    "register": {"model_name": "real-scorer", "class_accuracy_floor": 0.0},
}
STEPS = {"better": 120, "worse": 1}


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmnist_small) -> Path:
    (x, y), (xt, yt) = fmnist_small["train"], fmnist_small["test"]
    write_prepared(tmp_path / "prepared", {"train": (x[:500], y[:500]), "val": (x[500:], y[500:]),
                                           "test": (xt, yt)}, FMNIST_CATEGORIES)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("PRODUCTGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return tmp_path


def _run(*args: str) -> str:
    res = CliRunner().invoke(cli, ["--params", "params.yaml", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_real_scorer_keeps_the_better_generator_as_champion(workdir: Path):
    for name, steps in STEPS.items():
        _run("train", "--data", "prepared", "--out", f"{name}/generator", "--steps", str(steps))
        _run("evaluate", "--generator", f"{name}/generator", "--data", "prepared", "--out", f"{name}/eval")
    fd = {n: json.loads((workdir / n / "eval" / "metrics.json").read_text())["fd_domain"] for n in STEPS}
    assert fd["better"] < fd["worse"], fd  # clearly different quality, as the evaluation step sees it

    decisions = {}
    for name in ("better", "worse"):
        _run("register", "--generator", f"{name}/generator", "--metrics", f"{name}/eval/metrics.json",
             "--data", "prepared", "--out", f"{name}/register.json")
        decisions[name] = json.loads((workdir / name / "register.json").read_text())

    assert decisions["better"]["decision"] == "promoted"
    worse = decisions["worse"]
    assert worse["decision"] == "kept" and "not better" in worse["reason"], worse
    # both re-scored in the register step by the real scorer, the champion downloaded from the registry
    scores = worse["scores"]
    assert scores["champion"]["fd_domain"] < scores["challenger"]["fd_domain"], scores
    assert scores["champion"]["fd_domain"] == pytest.approx(fd["better"], rel=1e-6)  # same data, same code

    client = store.client()
    aliases = promotion.aliases(client, PARAMS["register"]["model_name"])
    assert aliases == {"champion": decisions["better"]["version"], "challenger": worse["version"]}
