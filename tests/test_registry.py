"""Registration and promotion on the embedded store (SQLite in tmp_path, artifacts on local disk)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from registry_helpers import fake_scorer, make_candidate

from productgan.registry import promote as promotion
from productgan.registry.config import RegisterConfig
from productgan.registry.lock import LockTimeout, PromotionLock, lock_model_name
from productgan.registry.log import RegistrationError
from productgan.registry.register import register_generator

REPO = Path(__file__).resolve().parents[1]
NAME = "product-gan"
GOOD = {"fd_domain": 10.0, "class_accuracy": 0.8}


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database, migrated once; each test starts from a copy (migrations take seconds)."""
    from productgan.registry import store

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    store.ensure_store(f"sqlite:///{db}")
    return db


@pytest.fixture()
def lab(tmp_path, monkeypatch, empty_store):
    """A fresh embedded MLflow store in tmp_path (and the cwd there, so ./mlruns artifacts stay in tmp)."""
    import mlflow

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    (tmp_path / "prepared").mkdir()
    yield tmp_path
    mlflow.end_run()


def candidate(lab: Path, name: str, scores: dict, **kw) -> tuple[Path, Path]:
    return make_candidate(lab / name, scores, seed=len(list(lab.glob("c*"))), **kw)


def register(lab: Path, gen_metrics: tuple[Path, Path], data: bool = True, cfg: RegisterConfig | None = None) -> dict:
    gen, metrics = gen_metrics
    return register_generator(gen, metrics, data_dir=lab / "prepared" if data else None,
                              cfg=cfg or RegisterConfig(), scorer=fake_scorer)


def client():
    from productgan.registry import store

    return store.client()


def test_dvc_stage_runs_after_evaluate():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["register"]
    assert stage["cmd"].startswith("python -m productgan register --generator models/generator")
    # register depends on evaluate's metrics output, so `dvc repro` orders it after evaluate
    assert {"models/generator", "metrics/eval/metrics.json", "prepared", "productgan/registry"} <= set(stage["deps"])
    # evaluate: how champion and challenger are re-scored; the effective settings (defaults and params.yaml)
    assert stage["params"] == [{"params.effective.yaml": ["register", "evaluate"]}]
    assert stage["metrics"] == [{"metrics/register.json": {"cache": False}}]


def test_decision_rule():
    cfg = RegisterConfig(margin=0.1, class_accuracy_floor=0.5)
    assert promotion.decide(GOOD, None, cfg).promoted
    assert promotion.decide({"fd_domain": 8.9, "class_accuracy": 0.6}, GOOD, cfg).promoted  # 11% better
    assert promotion.decide({"fd_domain": 9.5, "class_accuracy": 0.6}, GOOD, cfg).decision == "kept"  # 5%: margin
    assert promotion.decide({"fd_domain": 1.0, "class_accuracy": 0.4}, GOOD, cfg).decision == "kept"  # floor
    assert promotion.decide({"fd_domain": 1.0, "class_accuracy": 0.4}, None, cfg).decision == "kept"
    assert promotion.decide({"fd_domain": math.nan, "class_accuracy": 0.9}, None, cfg).decision == "refused"
    assert promotion.decide({"fd_domain": 1.0}, None, cfg).decision == "kept"  # no class accuracy: no promotion
    up = RegisterConfig(primary_metric="precision", greater_is_better=True, margin=0.0, class_accuracy_floor=0.0)
    assert promotion.decide({"precision": 0.51, "class_accuracy": 0}, {"precision": 0.5}, up).promoted
    assert not promotion.decide({"precision": 0.5, "class_accuracy": 0}, {"precision": 0.5}, up).promoted


def test_first_becomes_champion_worse_stays_challenger_better_is_promoted(lab):
    first = register(lab, candidate(lab, "c1", GOOD))
    assert (first["version"], first["decision"], first["champion_version"]) == ("1", "promoted", "1")

    # the metrics file claims a great score, but re-scoring on the same data finds it worse: no stale numbers
    worse = register(lab, candidate(lab, "c2", {"fd_domain": 12.0, "class_accuracy": 0.9},
                                    file_metrics={"fd_domain": 1.0, "class_accuracy": 0.9}))
    assert (worse["decision"], worse["champion_version"]) == ("kept", "1")
    assert worse["scores"] == {"challenger": {"class_accuracy": 0.9, "fd_domain": 12.0}, "champion": GOOD}
    assert promotion.aliases(client(), NAME) == {"champion": "1", "challenger": "2"}

    within_margin = register(lab, candidate(lab, "c3", {"fd_domain": 9.9, "class_accuracy": 0.9}))
    assert within_margin["decision"] == "kept" and "margin" in within_margin["reason"]

    better = register(lab, candidate(lab, "c4", {"fd_domain": 7.0, "class_accuracy": 0.7}))
    assert (better["version"], better["decision"], better["champion_version"]) == ("4", "promoted", "4")
    assert promotion.aliases(client(), NAME) == {"champion": "4"}  # the challenger became champion

    c = client()
    tags = c.get_model_version(NAME, "4").tags
    assert tags["promotion.decision"] == "promoted" and tags["promotion.champion_version"] == "1"
    assert json.loads(tags["promotion.scores"])["champion"] == GOOD
    event = json.loads(tags["champion.event"])
    assert event["action"] == "auto" and event["previous"] == "1" and event["by"] and event["at"]
    assert json.loads(c.get_model_version(NAME, "1").tags["champion.replaced"])["by_version"] == "4"
    assert [e["version"] for e in promotion.history(c, NAME)] == ["1", "4"]
    # the decision is also in the register run
    run = c.get_run(better["register_run_id"])
    assert run.data.tags["promotion.decision"] == "promoted"
    assert run.data.metrics["challenger.fd_domain"] == 7.0 and run.data.metrics["champion.fd_domain"] == 10.0
    assert run.data.tags["mlflow.parentRunId"] == better["training_run_id"]
    assert not c.search_model_versions(f"name='{lock_model_name(NAME)}'")  # every lock ticket released


def test_lineage_tags_and_model_contents(lab):
    import mlflow

    gen, metrics = candidate(lab, "c1", GOOD)
    result = register(lab, (gen, metrics))
    mv = client().get_model_version(NAME, result["version"])
    run_json = json.loads((gen / "run.json").read_text())
    assert mv.tags["training_run_id"] == run_json["run_id"] == result["training_run_id"]
    assert mv.tags["dataset_version"] == "abc123.dir" and mv.tags["params_hash"] == "p0000"
    assert mv.tags["git_commit"] == "0123456789abcdef" and mv.tags["training_status"] == "FINISHED"
    assert float(mv.tags["metric.fd_domain"]) == 10.0 and float(mv.tags["metric.class_accuracy"]) == 0.8
    assert json.loads(mv.tags["categories"])[1] == "Trouser"
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{result['version']}", dst_path=str(lab / "dl")))
    assert sorted(p.name for p in (local / "artifacts" / "generator").iterdir()) == [
        "generator.json", "generator.safetensors"]
    assert (local / "code" / "productgan" / "serve" / "pyfunc.py").is_file() and not list(local.rglob("*.pkl"))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["signature"]["inputs"] and (local / "input_example.json").is_file()
    reqs = (local / "requirements.txt").read_text()
    assert "torch==" in reqs and "safetensors==" in reqs and "mlflow==" in reqs


def test_same_generator_registered_twice_reuses_its_version(lab):
    pair = candidate(lab, "c1", GOOD)
    first = register(lab, pair)
    again = register(lab, pair)
    assert again["version"] == first["version"] and again["reused"] is True
    assert again["decision"] == "promoted"
    assert len(client().search_model_versions(f"name='{NAME}'")) == 1


def test_failed_or_diverged_training_is_never_registered_or_promoted(lab):
    with pytest.raises(RegistrationError, match="FAILED"):
        register(lab, candidate(lab, "c1", GOOD, status="FAILED", run_json_status="FINISHED"))
    with pytest.raises(RegistrationError, match="FAILED"):
        register(lab, candidate(lab, "c2", GOOD, status="FINISHED", run_json_status="FAILED"))
    with pytest.raises(RegistrationError, match="diverged"):
        register(lab, candidate(lab, "c3", GOOD, file_metrics={"fd_domain": math.nan, "class_accuracy": 0.9}))
    c = client()
    assert not c.search_registered_models(f"name='{NAME}'")

    # a version whose training run is later found FAILED can neither win nor be promoted by hand
    register(lab, candidate(lab, "c4", GOOD))
    gen, metrics = candidate(lab, "c5", {"fd_domain": 1.0, "class_accuracy": 0.99})
    cfg = RegisterConfig()
    version = register_generator(gen, metrics, data_dir=None, cfg=cfg, scorer=fake_scorer)["version"]  # kept
    c.set_terminated(json.loads((gen / "run.json").read_text())["run_id"], "FAILED")
    with pytest.raises(promotion.PromotionError, match="FAILED"):
        promotion.promote_version(c, cfg, version)
    c.delete_model_version_tag(NAME, version, "promotion.decision")  # undecided again: the rule refuses it too
    decided = promotion.promote_new_version(c, cfg, version, challenger_dir=gen, data_dir=lab / "prepared",
                                            scorer=fake_scorer, recorded_scores={})
    assert decided["decision"] == "refused" and "FAILED" in decided["reason"]
    assert promotion.aliases(c, NAME)["champion"] == "1"


def test_without_data_only_a_first_version_is_decided(lab):
    assert register(lab, candidate(lab, "c1", GOOD), data=False)["decision"] == "promoted"
    second = register(lab, candidate(lab, "c2", {"fd_domain": 1.0, "class_accuracy": 0.9}), data=False)
    assert second["decision"] == "kept" and "--data" in second["reason"]
    assert promotion.aliases(client(), NAME)["champion"] == "1"


def test_manual_promote_and_rollback(lab):
    cfg = RegisterConfig()
    register(lab, candidate(lab, "c1", GOOD))
    register(lab, candidate(lab, "c2", {"fd_domain": 5.0, "class_accuracy": 0.8}))  # promoted
    register(lab, candidate(lab, "c3", {"fd_domain": 20.0, "class_accuracy": 0.8}))  # kept
    c = client()
    assert promotion.aliases(c, NAME) == {"champion": "2", "challenger": "3"}

    moved = promotion.promote_version(c, cfg, 3, reason="canary looked better")
    assert (moved["champion_version"], moved["previous"]) == ("3", "2")
    event = json.loads(c.get_model_version(NAME, "3").tags["champion.event"])
    assert event["action"] == "manual" and event["reason"] == "canary looked better"
    assert event["by"] and event["at"] and event["previous"] == "2"
    assert promotion.promote_version(c, cfg, 3)["changed"] is False

    assert promotion.rollback(c, cfg, reason="bad canary")["champion_version"] == "2"
    assert json.loads(c.get_model_version(NAME, "3").tags["champion.rolled_back"])["reason"] == "bad canary"
    assert json.loads(c.get_model_version(NAME, "2").tags["champion.event"])["action"] == "rollback"
    assert promotion.rollback(c, cfg)["champion_version"] == "1"
    with pytest.raises(promotion.PromotionError, match="no earlier champion"):
        promotion.rollback(c, cfg)
    assert [e["version"] for e in promotion.history(c, NAME)] == ["1"]
    with pytest.raises(promotion.PromotionError, match="no version 9"):
        promotion.promote_version(c, cfg, 9)


def test_lock_removes_expired_tickets_and_times_out_on_live_ones(lab):
    c = client()
    lock_name = lock_model_name(NAME)
    c.create_registered_model(lock_name)
    c.create_model_version(lock_name, "lock:x", tags={"owner": "dead@host", "beat": "7", "lease_s": "1"})
    start = time.monotonic()
    with PromotionLock(c, NAME, lease_s=30, timeout_s=20) as lock:  # the dead holder's ticket is cleared ...
        assert lock.ticket == 2 and time.monotonic() - start > 1  # ... once its beat stood still for its lease
        with pytest.raises(LockTimeout, match="held by .*ticket 2"):
            PromotionLock(c, NAME, lease_s=30, timeout_s=0.5, poll_s=0.05).acquire()
    assert not c.search_model_versions(f"name='{lock_name}'")


def test_cli_register_and_promote(lab, cli_env):
    import os

    env = dict(cli_env, MLFLOW_TRACKING_URI=os.environ["MLFLOW_TRACKING_URI"], PYTHONPATH=f"{REPO}")
    gen, metrics = candidate(lab, "c1", GOOD)
    out = lab / "metrics" / "register.json"
    cmd = [sys.executable, "-m", "productgan", "register", "--generator", str(gen), "--metrics", str(metrics),
           "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=lab)
    assert res.returncode == 0, res.stderr
    record = json.loads(out.read_text())
    assert record == {"model_name": NAME, "version": "1", "champion_version": "1", "decision": "promoted",
                      "reason": record["reason"], "scores": {"challenger": GOOD, "champion": None}}

    failed, failed_metrics = candidate(lab, "c2", GOOD, status="FAILED")
    res = subprocess.run(cmd[:5] + [str(failed), "--metrics", str(failed_metrics)], capture_output=True, text=True,
                         env=env, cwd=lab)
    assert res.returncode == 1 and "refused" in res.stderr and "FAILED" in res.stderr

    res = subprocess.run([sys.executable, "-m", "productgan", "promote"], capture_output=True, text=True, env=env,
                         cwd=lab)
    assert res.returncode == 0 and json.loads(res.stdout)["aliases"] == {"champion": "1"}
