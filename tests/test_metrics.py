"""The metric formulas against independent references: Fréchet distance vs pytorch-fid's scipy-sqrtm route
(1e-6 relative, also for singular and nearly singular covariances), KID vs a brute-force MMD², precision/
recall and k-NN radii on known point sets, and the TF1 bilinear resize in front of Inception."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from productgan.metrics.diversity import diversity_ratios, mean_pairwise_distance
from productgan.metrics.frechet import feature_stats, frechet_distance, frechet_distance_features
from productgan.metrics.inception import resize_tf1_bilinear
from productgan.metrics.kid import kernel_inception_distance, mmd2_unbiased
from productgan.metrics.precision_recall import knn_radii, precision_recall


def pytorch_fid_reference(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm, eps offset when the product is singular)."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _gaussian(rng, n, d, mix, shift=0.0):
    return rng.standard_normal((n, d)) @ mix + shift


CASES = [
    # (d, n1, n2, same distribution, what it exercises)
    (64, 2000, 2000, True, "well conditioned, close distributions (small distance)"),
    (64, 1000, 1200, False, "well conditioned, different distributions"),
    (128, 60, 80, True, "singular: fewer samples than dimensions"),
    (256, 100, 120, False, "singular, different distributions"),
    (64, 65, 65, True, "barely full rank"),
]


@pytest.mark.parametrize("d,n1,n2,same,_what", CASES)
def test_frechet_matches_pytorch_fid_reference(d, n1, n2, same, _what):
    rng = np.random.default_rng(d + n1)
    mix = rng.standard_normal((d, d)) * 0.3
    a = _gaussian(rng, n1, d, mix)
    b = _gaussian(rng, n2, d, mix if same else rng.standard_normal((d, d)) * 0.3, 0.0 if same else 0.2)
    (mu1, s1), (mu2, s2) = feature_stats(a), feature_stats(b)
    ours, ref = frechet_distance(mu1, s1, mu2, s2), pytorch_fid_reference(mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, rel=1e-6)
    assert frechet_distance_features(a, b) == ours


def test_frechet_exact_for_rank_deficient_covariances():
    """With N < d the exact trace term is the nuclear norm of the centred data cross-product."""
    rng = np.random.default_rng(11)
    mix = rng.standard_normal((200, 200)) * 0.3
    a, b = rng.standard_normal((40, 200)) @ mix, rng.standard_normal((50, 200)) @ mix
    ac, bc = a - a.mean(0), b - b.mean(0)
    nuclear = np.linalg.svd(ac @ bc.T / np.sqrt(39 * 49), compute_uv=False).sum()
    (mu1, s1), (mu2, s2) = feature_stats(a), feature_stats(b)
    exact = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * nuclear
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-12)


def test_frechet_nearly_singular_covariance():
    """Covariances with eigenvalues spanning 1e0..1e-12 (directions the features barely use)."""
    rng = np.random.default_rng(1)
    d = 48
    q1, _ = np.linalg.qr(rng.standard_normal((d, d)))
    q2, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s1 = (q1 * np.logspace(0, -12, d)) @ q1.T
    s2 = (q2 * np.logspace(0.2, -12, d)) @ q2.T
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(pytorch_fid_reference(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_closed_form_and_identity():
    # diagonal covariances: d² = |mu1 - mu2|² + Σ (√a - √b)²
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 16))
    assert frechet_distance(*feature_stats(x), *feature_stats(x)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(mu1, np.diag(a), mu2[:2], np.diag(b[:2]))


def test_mmd2_unbiased_matches_brute_force():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 0.3
    k = lambda u, v: (u @ v / 5 + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-5)


def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(4)
    real, same = rng.standard_normal((600, 32)), rng.standard_normal((600, 32))
    other = rng.standard_normal((600, 32)) * 1.5 + 0.5
    kid_same, std_same = kernel_inception_distance(real, same, subsets=20, subset_size=200)
    kid_other, _ = kernel_inception_distance(real, other, subsets=20, subset_size=200)
    assert abs(kid_same) < 3 * std_same + 1e-3  # unbiased: centred on 0
    assert kid_other > 20 * abs(kid_same) and kid_other > 0.1
    assert kernel_inception_distance(real, other, subsets=5, subset_size=200, seed=9) == kernel_inception_distance(
        real, other, subsets=5, subset_size=200, seed=9
    )


def test_knn_radii_match_sorted_distances():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 3))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    expected = np.sort(d, axis=1)[:, 3]  # column 0 is the point itself
    np.testing.assert_allclose(knn_radii(x, 3), expected, rtol=1e-5, atol=1e-5)


def test_precision_recall_on_known_sets():
    rng = np.random.default_rng(6)
    real = rng.standard_normal((800, 4))
    p, r = precision_recall(real, rng.standard_normal((800, 4)), k=3)
    assert p > 0.85 and r > 0.85
    # generated points only from half of the real support: realistic (precision) but half the variety
    half = rng.standard_normal((1600, 4))
    half = half[half[:, 0] > 0][:800]
    p, r = precision_recall(real, half, k=3)
    assert p > 0.9 and 0.35 < r < 0.7
    # far away: neither realistic nor covering
    assert precision_recall(real, rng.standard_normal((800, 4)) + 20, k=3) == (0.0, 0.0)


def test_diversity_ratio_flags_identical_samples():
    rng = np.random.default_rng(7)
    real, labels = rng.standard_normal((200, 8)), np.repeat([0, 1], 100)
    fake = np.concatenate([rng.standard_normal((100, 8)), np.tile(rng.standard_normal((1, 8)), (100, 1))])
    ratios = diversity_ratios(real, labels, fake, labels, 2)
    assert 0.8 < ratios[0] < 1.2 and ratios[1] < 1e-3
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)


def _tf1_resize_naive(img: np.ndarray, out: int) -> np.ndarray:
    """TensorFlow 1.x resize_bilinear (align_corners=False), one pixel at a time in float64."""
    h, w = img.shape
    res = np.empty((out, out))
    for i in range(out):
        y = i * h / out
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, h - 1), y - y0
        for j in range(out):
            x = j * w / out
            x0 = int(np.floor(x))
            x1, fx = min(x0 + 1, w - 1), x - x0
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * fx
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * fx
            res[i, j] = top + (bottom - top) * fy
    return res


def _nvidia_grid_resize(x: torch.Tensor, out: int) -> torch.Tensor:
    """The resize inside NVIDIA's Inception TorchScript (affine grid shifted to TF1 sampling positions)."""
    n, _, h, w = x.shape
    theta = torch.eye(2, 3).unsqueeze(0).repeat(n, 1, 1)
    theta[:, 0, 2] += 1 / w - 1 / out
    theta[:, 1, 2] += 1 / h - 1 / out
    grid = torch.nn.functional.affine_grid(theta, [n, x.shape[1], out, out], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def test_tf1_bilinear_resize_matches_references():
    rng = np.random.default_rng(8)
    img = rng.integers(0, 256, (2, 1, 28, 28)).astype(np.float32)
    ours = resize_tf1_bilinear(torch.from_numpy(img), (299, 299)).numpy()
    np.testing.assert_allclose(ours[1, 0], _tf1_resize_naive(img[1, 0].astype(np.float64), 299), atol=1e-3)
    np.testing.assert_allclose(ours, _nvidia_grid_resize(torch.from_numpy(img), 299).numpy(), atol=2e-2)
    same = resize_tf1_bilinear(torch.from_numpy(img), (28, 28)).numpy()
    np.testing.assert_array_equal(same, img)


class _NvidiaLayoutInception(torch.nn.Module):
    """Stands in for NVIDIA's own export: takes 0..255 images and a return_features flag."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert img.shape[1:] == (3, 299, 299)
        return img.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 2048)


def test_inception_accepts_nvidia_layout_with_0_255_input(tmp_path):
    from productgan.metrics.inception import InceptionExtractor

    path = tmp_path / "nvidia-inception.pt"
    torch.jit.script(_NvidiaLayoutInception()).save(str(path))
    ext = InceptionExtractor(path)
    assert ext.nvidia_layout
    images = np.full((2, 1, 28, 28), 200, np.uint8)
    np.testing.assert_allclose(ext.features(images, progress=False), 200.0, rtol=1e-6)


def test_inception_precision_auto_is_measured_once_on_a_bf16_cpu_and_fp32_elsewhere(tmp_path, monkeypatch):
    """``auto`` on a CPU with native bf16 times the extractor in fp32 and bf16 autocast and keeps the faster, once
    per machine (later extractors read the cached answer); a CPU without native bf16, or a precision set
    explicitly, is not measured."""
    import productgan.metrics.inception as inception

    path = tmp_path / "nvidia-inception.pt"
    torch.jit.script(_NvidiaLayoutInception()).save(str(path))
    measured = []
    real_timer = inception.time_precisions
    monkeypatch.setattr(inception, "time_precisions", lambda *a, **k: measured.append(1) or real_timer(*a, **k))
    monkeypatch.setattr(inception, "cpu_has_native_bf16", lambda: True)
    first = inception.InceptionExtractor(path, precision="auto", cache_dir=tmp_path / "cache")
    assert first.precision in ("fp32", "bf16") and set(first.precision_probe) == {"fp32", "bf16"}
    assert first.identity.endswith(f"-{first.precision}") and "faster measured" in first.info["precision_auto"]
    [entry] = (tmp_path / "cache" / "inception_precision").glob("*.json")
    assert json.loads(entry.read_text())["precision"] == first.precision
    again = inception.InceptionExtractor(path, precision="auto", cache_dir=tmp_path / "cache")
    assert again.precision == first.precision and len(measured) == 1  # read, not measured again
    explicit = inception.InceptionExtractor(path, precision="fp32", cache_dir=tmp_path / "other")
    monkeypatch.setattr(inception, "cpu_has_native_bf16", lambda: False)
    plain = inception.InceptionExtractor(path, precision="auto", cache_dir=tmp_path / "other")
    assert (explicit.precision, plain.precision) == ("fp32", "fp32") and len(measured) == 1
    assert "precision_auto" not in plain.info and not (tmp_path / "other").exists()


def test_inception_batch_size_auto_is_8_on_a_cpu_and_batching_does_not_change_features(tmp_path):
    from productgan.metrics.evaluate import EvaluateParams
    from productgan.metrics.inception import InceptionExtractor, resolve_batch_size
    from productgan.params import ParamsError

    assert resolve_batch_size("auto", torch.device("cpu")) == 8
    assert resolve_batch_size("auto", torch.device("cuda")) == 32
    assert resolve_batch_size(16, torch.device("cpu")) == 16
    path = tmp_path / "nvidia-inception.pt"
    torch.jit.script(_NvidiaLayoutInception()).save(str(path))
    images = np.arange(11 * 28 * 28, dtype=np.int64).reshape(11, 1, 28, 28).astype(np.uint8)
    auto, three = InceptionExtractor(path), InceptionExtractor(path, batch_size=3)
    assert (auto.batch_size, three.batch_size) == (8, 3)
    np.testing.assert_array_equal(auto.features(images, progress=False), three.features(images, progress=False))
    for bad in (0, "big", True):
        with pytest.raises(ParamsError, match="inception_batch_size"):
            EvaluateParams(inception_batch_size=bad)
