"""Retraining semantics: train only when the (dataset version, code, params) triple has not been trained yet."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from components import check, retrain
from components.runtime import parse_params
from pipelines.product_gan import params_argument
from productgan.lineage import model_params_hash

DATA_A, DATA_B = "a" * 32 + ".dir", "b" * 32 + ".dir"
CODE = "0123456789abcdef"  # a model code version (productgan.lineage.model_code_version)
PARAMS = {"train": {"steps": 3}, "register": {}}


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """One SQLite tracking DB for the module (creating one costs seconds); each test has its own model name."""
    import os

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    MlflowClient().search_registered_models()  # create the schema once
    yield uri
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture()
def name(request) -> str:
    return f"product-gan-{request.node.name}"


@pytest.fixture()
def registry(tracking_uri, tmp_path, name):
    """Adds model versions tagged the way the register step tags them."""
    from mlflow import MlflowClient

    client = MlflowClient()

    def add(dataset_version: str, code_version: str, phash: str, champion: bool, decided: bool = True) -> str:
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        source = tmp_path / "artifacts" / dataset_version
        source.mkdir(parents=True, exist_ok=True)
        tags = {"dataset_version": dataset_version, "code_version": code_version, "params_hash": phash,
                "git_commit": "f" * 40}  # recorded for people, not compared
        if decided:  # register's last tag on a version (productgan.registry.promote)
            tags["promotion.decision"] = "promoted" if champion else "kept"
        mv = client.create_model_version(name, str(source), tags=tags)
        if champion:
            client.set_registered_model_alias(name, "champion", mv.version)
        return str(mv.version)

    return add


def test_no_model_yet_means_train(registry, name):
    decision = retrain.retrain_decision(name, DATA_A, CODE, model_params_hash(PARAMS))
    assert decision.retrain and "is registered yet" in decision.reason and name in decision.reason


def test_same_data_code_and_params_as_the_champion_ends_early(registry, name):
    version = registry(DATA_A, CODE, model_params_hash(PARAMS), champion=True)
    decision = retrain.retrain_decision(name, DATA_A, CODE, model_params_hash(PARAMS))
    assert not decision.retrain and decision.matching_version == version
    assert "nothing new" in decision.reason and "champion" in decision.reason


@pytest.mark.parametrize(
    ("data", "code", "params", "changed"),
    [
        (DATA_B, CODE, PARAMS, "dataset_version"),
        (DATA_A, "f" * 16, PARAMS, "code_version"),
        (DATA_A, CODE, {"train": {"steps": 4}, "register": {}}, "params_hash"),
    ],
)
def test_new_data_code_or_params_means_train(registry, name, data, code, params, changed):
    registry(DATA_A, CODE, model_params_hash(PARAMS), champion=True)
    decision = retrain.retrain_decision(name, data, code, model_params_hash(params))
    assert decision.retrain
    assert decision.reason.startswith("changed since version 1:") and changed in decision.reason
    assert all(k not in decision.reason for k in retrain.LINEAGE_TAGS if k != changed)


def test_a_candidate_that_lost_to_the_champion_is_not_trained_again(registry, name):
    registry(DATA_A, CODE, model_params_hash(PARAMS), champion=True)
    loser = registry(DATA_B, CODE, model_params_hash(PARAMS), champion=False)  # new data, worse model: not promoted
    decision = retrain.retrain_decision(name, DATA_B, CODE, model_params_hash(PARAMS))
    assert not decision.retrain and decision.matching_version == loser
    assert "did not beat the champion" in decision.reason


def test_a_version_register_left_undecided_does_not_count_as_trained(registry, name):
    """An outage stopped register after the version was created, before its decision: the triple is not done,
    so the next run trains (and register, finding the same generator, finishes that version)."""
    registry(DATA_A, CODE, model_params_hash(PARAMS), champion=True)
    half = registry(DATA_B, CODE, model_params_hash(PARAMS), champion=False, decided=False)
    decision = retrain.retrain_decision(name, DATA_B, CODE, model_params_hash(PARAMS))
    assert decision.retrain and decision.matching_version is None
    assert f"version {half} of" in decision.reason and "never decided" in decision.reason
    registry(DATA_B, CODE, model_params_hash(PARAMS), champion=False)  # a later register decided one: done
    assert not retrain.retrain_decision(name, DATA_B, CODE, model_params_hash(PARAMS)).retrain


def test_force_or_unknown_data_always_train(registry, name):
    registry(DATA_A, CODE, model_params_hash(PARAMS), champion=True)
    assert retrain.retrain_decision(name, DATA_A, CODE, model_params_hash(PARAMS), force=True).retrain
    unknown = retrain.retrain_decision(name, None, CODE, model_params_hash(PARAMS))
    assert unknown.retrain and "dataset version unknown" in unknown.reason


def test_a_change_outside_the_model_code_trains_nothing(registry, name, tmp_path, monkeypatch):
    """The code the check compares is the model code's version, not the git commit: a README, serving or
    comment-only change (a new commit, a dirty tree) keeps it; a change to a module training imports does not."""
    import shutil

    from productgan import lineage

    src = tmp_path / "src"
    shutil.copytree(Path(lineage.__file__).parent, src / "productgan", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(lineage, "_PACKAGE_ROOT", src)
    version = lineage.model_code_version()
    registry(DATA_A, version, model_params_hash(PARAMS), champion=True)
    (tmp_path / "README.md").write_text("new words\n")
    api = src / "productgan" / "serve" / "api.py"
    api.write_text(api.read_text() + "\nSERVING_CHANGED = True\n")
    trainer = src / "productgan" / "gan" / "trainer.py"
    trainer.write_text("# a reviewer's note\n" + trainer.read_text())
    assert lineage.model_code_version() == version
    assert not retrain.retrain_decision(name, DATA_A, lineage.model_code_version(), model_params_hash(PARAMS)).retrain
    arrays = src / "productgan" / "data" / "arrays.py"  # imported by the trainer, outside productgan/gan
    arrays.write_text(arrays.read_text() + "\nCHANGED = True\n")
    decision = retrain.retrain_decision(name, DATA_A, lineage.model_code_version(), model_params_hash(PARAMS))
    assert decision.retrain and "code_version" in decision.reason


def test_the_component_body_decides_and_says_so(registry, name, tmp_path, monkeypatch):
    """The KFP component function itself (what runs in the pod), with lineage from the image's code."""
    from productgan.lineage import model_code_version

    code = model_code_version()
    text = params_argument({**PARAMS, "register": {"model_name": name}})
    registry(DATA_A, code, model_params_hash(parse_params(text)), champion=True)  # as register tags it
    summary = types.SimpleNamespace(path=str(tmp_path / "summary.md"), metadata={})

    out = check.retrain_check(params=text, dataset_version=DATA_A, force=False, summary=summary)
    assert out is False and "nothing new" in summary.metadata["reason"]
    md = (tmp_path / "summary.md").read_text()
    assert "**Nothing to do**" in md and DATA_A in md and code in md

    out = check.retrain_check(params=text, dataset_version=DATA_B, force=False, summary=summary)
    assert out is True and "**Retrain**" in (tmp_path / "summary.md").read_text()

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # restored by monkeypatch
    with pytest.raises(RuntimeError, match="MLFLOW_TRACKING_URI is not set"):
        check.retrain_check(params=text, dataset_version=DATA_A, force=False, summary=summary)


def test_only_settings_that_change_the_model_make_a_new_training(registry, name, tmp_path, monkeypatch):
    """The params hash the check compares (and register records) covers what changes the trained model: not
    CPU requests, log or checkpoint intervals, the device, evaluation or promotion settings."""
    import yaml

    from pipelines.overrides import apply_overrides
    from productgan.lineage import model_code_version

    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    base = apply_overrides(shipped, [("register.model_name", name)])
    registry(DATA_A, model_code_version(), model_params_hash(base), champion=True)
    summary = types.SimpleNamespace(path=str(tmp_path / "summary.md"), metadata={})

    def retrains(dotted: str, value) -> bool:
        text = params_argument(apply_overrides(base, [(dotted, value)]))
        return check.retrain_check(params=text, dataset_version=DATA_A, force=False, summary=summary)

    for dotted, value in [("pipeline.resources.train.cpu", "64"), ("pipeline.gpus", 4), ("train.log_every", 7),
                          ("train.checkpoint_every", 9), ("train.sample_every", 11), ("train.num_threads", 3),
                          ("train.device", "cuda"), ("evaluate.n", 50), ("register.margin", 0.5),
                          ("ingest.s3_max_attempts", 2), ("generate.n", 3)]:
        assert not retrains(dotted, value), f"{dotted}={value} does not change the model, yet the check retrains"
    for dotted, value in [("train.steps", 9), ("train.max_minutes", 1.0), ("train.lr_g", 0.1),
                          ("train.recipe", "baseline"), ("train.batch_size", 8), ("preprocess.resolution", 32)]:
        assert retrains(dotted, value), f"{dotted}={value} changes the model, yet the check does not retrain"
        assert "params_hash" in summary.metadata["reason"]

    # the hash is of the effective settings: stating a default changes nothing, a changed default (here the
    # default recipe's row) is a change
    from productgan.gan import recipes

    assert model_params_hash(apply_overrides(base, [("train.steps", recipes.TrainParams().steps)])) == (
        model_params_hash(base))
    monkeypatch.setitem(recipes.RECIPES, "default", {"lr_g": 0.1})
    assert model_params_hash(base) != model_params_hash(apply_overrides(base, [("train.lr_g", 4e-4)]))
    assert retrains("train.log_every", 7)
