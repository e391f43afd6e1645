"""Fréchet distance between two Gaussians fitted to feature sets (the formula behind FID and fd_domain).

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)

The trace term is computed without forming a matrix square root of the (non-symmetric) product S1 S2:
with S1 = F1 F1ᵀ and S2 = F2 F2ᵀ (symmetric eigen-factors; eigenvalues under the round-off floor dropped),
the eigenvalues of S1 S2 are the squared singular values of F2ᵀ F1, so tr((S1 S2)^½) is the nuclear norm of
F2ᵀ F1. That is float64 throughout, never complex, and needs no eps offset for singular covariances
(N < d). On rank-deficient covariances it matches the exact value (the nuclear norm of the centred data
cross-product, tests/test_metrics.py) to ~1e-15 relative where pytorch-fid's scipy ``sqrtm`` route is off by
~5e-8; both agree to 1e-6 (tested).

From samples (``frechet_distance_samples``) the factors need no eigendecomposition when there are fewer samples
than dimensions: the centred data scaled by 1/sqrt(N-1) is an exact factor of its covariance, so FID∞'s
subsets and per-category FIDs (hundreds of 2048-d Inception features) cost an N×N SVD, not a d×d one.
"""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of an (N, d) feature matrix in float64; covariance with the N-1 denominator."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need an (N >= 2, d) feature matrix, got shape {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """F (d × rank) with F Fᵀ = sigma for a symmetric positive semi-definite sigma.

    Eigenvalues below the round-off floor (d · eps · largest) are zero in exact arithmetic for a covariance
    of N < d samples; they are dropped, which also makes the SVD below as small as the ranks.
    """
    sym = (sigma + sigma.T) / 2.0
    eigvals, eigvecs = np.linalg.eigh(sym)
    keep = eigvals > len(sym) * np.finfo(np.float64).eps * max(eigvals[-1], 0.0)
    return eigvecs[:, keep] * np.sqrt(eigvals[keep])


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^½) for two covariance matrices."""
    f1, f2 = _psd_factor(sigma1), _psd_factor(sigma2)
    return float(np.linalg.svd(f2.T @ f1, compute_uv=False).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (squared, as FID reports it)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    # Round-off can make a distance of identical statistics a hair below zero.
    return max(float(value), 0.0)


def frechet_distance_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two (N, d) feature sets."""
    return frechet_distance(*feature_stats(features1), *feature_stats(features2))


def _sample_factor(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, F) with F Fᵀ = the sample covariance (N-1 denominator): the centred data itself when N <= d,
    else the eigen-factor of the d×d covariance (smaller then)."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need an (N >= 2, d) feature matrix, got shape {feats.shape}")
    mu = feats.mean(axis=0)
    if len(feats) <= feats.shape[1]:
        return mu, (feats - mu).T / np.sqrt(len(feats) - 1)
    return mu, _psd_factor(np.cov(feats, rowvar=False))


def frechet_distance_samples(features1: np.ndarray, features2: np.ndarray) -> float:
    """The Fréchet distance of two (N, d) feature sets, as ``frechet_distance_features`` (same value to round-off)
    but from data factors: fast when N is under d (subsets, per category)."""
    (mu1, f1), (mu2, f2) = _sample_factor(features1), _sample_factor(features2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"mismatched feature dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + (f1 * f1).sum() + (f2 * f2).sum() - 2.0 * np.linalg.svd(f2.T @ f1, compute_uv=False).sum()
    return max(float(value), 0.0)
