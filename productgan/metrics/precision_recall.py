"""Improved precision and recall (Kynkäänniemi et al. 2019).

Each set's manifold is the union of balls around its points with radius = distance to the point's k-th
nearest neighbour in the same set. Precision: share of generated points inside the real manifold (are the
samples realistic?). Recall: share of real points inside the generated manifold (is the variety covered?).

Distances are computed in float32 like the reference implementation (3× faster BLAS here; a flip at a ball's
boundary needs a tie to ~1e-6 relative).
"""

from __future__ import annotations

import numpy as np

_ROWS = 2048  # rows of the distance matrix held at once (2048 × 10,000 float32 = 80 MB)


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _pairwise_sq(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    return np.maximum(_sq_norms(a)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T), 0.0)


def knn_radii(features: np.ndarray, k: int = 3) -> np.ndarray:
    """Distance of every point to its k-th nearest other point of the same set."""
    feats = np.asarray(features, np.float32)
    if len(feats) <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii, got {len(feats)}")
    sq = _sq_norms(feats)
    radii = np.empty(len(feats), np.float32)
    for start in range(0, len(feats), _ROWS):
        d2 = _pairwise_sq(feats[start : start + _ROWS], feats, sq)
        # index k, not k-1: the point itself sits at distance 0 in its own row
        radii[start : start + _ROWS] = np.partition(d2, k, axis=1)[:, k]
    return np.sqrt(radii)


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = 3, real_radii: np.ndarray | None = None
) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real``; pass ``real_radii`` to reuse cached real radii."""
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    if real_radii is None:
        real_radii = knn_radii(real, k)
    fake_radii = knn_radii(fake, k)
    real_sq, real_r2, fake_r2 = _sq_norms(real), real_radii**2, fake_radii**2
    realistic = 0  # generated points inside some real ball
    covered = np.zeros(len(real), bool)  # real points inside some generated ball
    # one pass over the generated × real distances serves both directions
    for start in range(0, len(fake), _ROWS):
        d2 = _pairwise_sq(fake[start : start + _ROWS], real, real_sq)
        realistic += int((d2 <= real_r2[None, :]).any(axis=1).sum())
        covered |= (d2 <= fake_r2[start : start + _ROWS, None]).any(axis=0)
    return realistic / len(fake), float(covered.mean())
