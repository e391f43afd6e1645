"""FID's helpers at tiny sizes: the FID∞ line fit (Chong & Forsyth 2020), the sample-factor Fréchet distance it
and per-category FID use, the precision check that guards fast Inception paths, and the register step scoring
only the metrics its promotion rule reads."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.precision_check import TOLERANCE, check_precision, compare_fids
from productgan.metrics.catalog import count_name, metrics_providing, sample_count
from productgan.metrics.evaluate import EvaluateParams
from productgan.metrics.fid_infinity import fid_infinity, fit_inverse_n, sample_counts
from productgan.metrics.frechet import frechet_distance_features, frechet_distance_samples
from productgan.registry.config import RegisterConfig
from productgan.registry.scoring import scoring_params

# --- FID∞ ----------------------------------------------------------------------------------------------------------


def test_fit_recovers_an_exact_line_in_one_over_n():
    ns = [100, 200, 400, 800]
    fit = fit_inverse_n(ns, [3.0 + 500.0 / n for n in ns])
    assert fit.intercept == pytest.approx(3.0) and fit.slope == pytest.approx(500.0) and fit.r2 == pytest.approx(1.0)
    assert fit.at(10_000) == pytest.approx(3.05)
    assert fit.to_dict()["fid_at_10000"] == pytest.approx(3.05) and fit.to_dict()["n"] == ns
    with pytest.raises(ValueError, match="two or more distinct"):
        fit_inverse_n([100, 100], [1.0, 2.0])


def test_sample_counts_are_evenly_spaced_and_end_at_the_pool():
    assert sample_counts(2000, 5, 0.2) == [400, 800, 1200, 1600, 2000]
    assert sample_counts(20, 3, 0.5) == [10, 15, 20]
    with pytest.raises(ValueError):
        sample_counts(2, 5, 0.2)  # no two distinct counts
    with pytest.raises(ValueError):
        sample_counts(100, 1, 0.2)


def test_fid_infinity_removes_the_small_sample_bias_of_one_distribution():
    """Two samples of one Gaussian: FID at N is all bias (> 0, shrinking like 1/N); FID∞ is near the true 0."""
    rng = np.random.default_rng(0)
    d = 16
    a, b = rng.normal(size=(1200, d)), rng.normal(size=(1200, d))
    fit = fid_infinity(a, b, points=5, min_fraction=0.2, seed=1)
    assert fit.values[0] > fit.values[-1] > 0.01  # biased, less so with more samples
    assert abs(fit.intercept) < 0.2 * fit.values[-1]
    assert fit.slope > 0


def test_fid_infinity_finds_a_known_distance():
    """A mean shift of 1 in 4 of 32 dimensions: true FID 4. Over 8 independent draws of 600 a side the pool's FID
    is biased up (~4.9) while FID∞ is not (its mean within 0.25 of 4); one draw's noise is not its job."""
    d = 32
    shift = np.zeros(d)
    shift[:4] = 1.0
    inf, pool = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(size=(600, d)), rng.normal(size=(600, d)) + shift
        fit = fid_infinity(a, b, points=5, min_fraction=0.2, seed=seed)
        inf.append(fit.intercept)
        pool.append(fit.values[-1])
    assert np.mean(pool) - 4.0 > 0.5
    assert abs(np.mean(inf) - 4.0) < 0.25


def test_sample_factor_frechet_equals_the_covariance_route():
    rng = np.random.default_rng(2)
    for n1, n2, d in [(30, 40, 64), (200, 150, 64), (20, 300, 64)]:  # fewer samples than dims, more, mixed
        x = rng.normal(size=(n1, d))
        y = rng.normal(size=(n2, d)) * 1.5 + 0.3
        assert frechet_distance_samples(x, y) == pytest.approx(frechet_distance_features(x, y), rel=1e-9)
    assert frechet_distance_samples(x, x) == pytest.approx(0.0, abs=1e-9)


# --- the precision check -------------------------------------------------------------------------------------------


def _extractor(weights: np.ndarray, noise: float = 0.0, dtype=np.float64):
    """A toy feature extractor: a fixed projection of the pixels (rounded to ``dtype``, plus optional noise)."""
    rng = np.random.default_rng(5)

    def extract(images: np.ndarray) -> np.ndarray:
        x = images.reshape(len(images), -1).astype(np.float64) / 255.0
        feats = (x @ weights).astype(dtype).astype(np.float64)
        return feats + noise * rng.normal(size=feats.shape)

    return extract


def test_precision_check_accepts_round_off_and_rejects_a_path_that_moves_fid():
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (300, 1, 8, 8), dtype=np.uint8)
    fake = np.clip(real.astype(int) + rng.integers(-60, 60, real.shape), 0, 255).astype(np.uint8)
    weights = rng.normal(size=(64, 12))
    reference = _extractor(weights)
    close = check_precision(reference, _extractor(weights, dtype=np.float16), real, fake, ("fp32", "fp16"))
    assert close.accepted and close.relative_difference < TOLERANCE and close.fid_reference > 0
    assert close.n_real == close.n_generated == 300 and close.candidate == "fp16"
    far = check_precision(reference, _extractor(weights, noise=0.3), real, fake, ("fp32", "noisy"))
    assert not far.accepted and far.relative_difference >= TOLERANCE
    assert far.to_dict()["accepted"] is False


def test_compare_fids_rule():
    assert compare_fids(10.0, 10.04) == (pytest.approx(0.004), True)
    assert compare_fids(10.0, 9.94) == (pytest.approx(0.006), False)
    with pytest.raises(ValueError, match="positive FID"):
        compare_fids(0.0, 0.0)


# --- register scores only what it promotes on ----------------------------------------------------------------------


def test_register_rescoring_computes_only_the_metrics_of_its_rule():
    params = EvaluateParams()  # the shipped list: every metric, the Inception ones included
    assert "fid" in params.metrics
    assert scoring_params(params, RegisterConfig()).metrics == ["fd_domain", "class_accuracy"]
    assert scoring_params(params, RegisterConfig(primary_metric="fid_inf")).metrics == ["fid_inf", "class_accuracy"]
    # a count in the name is the count the re-scoring uses, on a CPU or a GPU alike
    by_name = scoring_params(params, RegisterConfig(primary_metric="fid2k"))
    assert (by_name.metrics, by_name.fid_n) == (["fid", "class_accuracy"], 2000)
    assert scoring_params(params, RegisterConfig(primary_metric="fid10k_per_category_mean")).fid_n == 10000
    assert [count_name(n) for n in (2000, 10000, 500, 2500)] == ["2k", "10k", "500", "2500"]
    assert [sample_count(k) for k in ("fid2k", "fid500", "fid10k_per_category_n", "fid_inf", "fd_domain")] == [
        2000, 500, 10000, None, None]
    assert metrics_providing(["precision", "recall", "kid_std"]) == ["precision_recall", "kid"]
    with pytest.raises(ValueError, match="no evaluate metric writes 'is'"):
        metrics_providing(["is"])
