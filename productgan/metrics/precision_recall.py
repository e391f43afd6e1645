"""Improved precision and recall (Kynkäänniemi et al. 2019).

Each set's manifold is the union of balls around its points with radius = distance to the point's k-th
nearest neighbour in the same set. Precision: share of generated points inside the real manifold (are the
samples realistic?). Recall: share of real points inside the generated manifold (is the variety covered?).
"""

from __future__ import annotations

import numpy as np

_ROWS = 1024  # rows of the distance matrix held at once (1024 × 10,000 float64 = 80 MB)


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _pairwise_sq(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    return np.maximum(_sq_norms(a)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T), 0.0)


def knn_radii(features: np.ndarray, k: int = 3) -> np.ndarray:
    """Distance of every point to its k-th nearest other point of the same set."""
    feats = np.asarray(features, np.float64)
    if len(feats) <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii, got {len(feats)}")
    sq = _sq_norms(feats)
    radii = np.empty(len(feats))
    for start in range(0, len(feats), _ROWS):
        d2 = _pairwise_sq(feats[start : start + _ROWS], feats, sq)
        # index k, not k-1: the point itself sits at distance 0 in its own row
        radii[start : start + _ROWS] = np.partition(d2, k, axis=1)[:, k]
    return np.sqrt(radii)


def _share_inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Share of ``points`` within radius of at least one centre."""
    c_sq, r_sq = _sq_norms(centres), radii**2
    inside = 0
    for start in range(0, len(points), _ROWS):
        d2 = _pairwise_sq(points[start : start + _ROWS], centres, c_sq)
        inside += int((d2 <= r_sq[None, :]).any(axis=1).sum())
    return inside / len(points)


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = 3, real_radii: np.ndarray | None = None
) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real``; pass ``real_radii`` to reuse cached real radii."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real_radii is None:
        real_radii = knn_radii(real, k)
    fake_radii = knn_radii(fake, k)
    return _share_inside(fake, real, real_radii), _share_inside(real, fake, fake_radii)
