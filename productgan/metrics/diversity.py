"""Mode-collapse signal: per category, how spread out the generated features are compared with the real ones.

diversity(S) = mean pairwise Euclidean distance between the features of S. The ratio generated/real is about
1 for a healthy generator, goes towards 0 when a category collapses onto few images, and is flagged below a
threshold (params: evaluate.collapse_threshold).
"""

from __future__ import annotations

import numpy as np

MAX_POINTS = 1000  # per category and side: 10^6 pairs is plenty for a mean


def mean_pairwise_distance(features: np.ndarray, max_points: int = MAX_POINTS, seed: int = 0) -> float:
    feats = np.asarray(features, np.float64)
    if len(feats) > max_points:
        feats = feats[np.random.default_rng(seed).choice(len(feats), max_points, replace=False)]
    n = len(feats)
    if n < 2:
        return float("nan")
    sq = np.einsum("ij,ij->i", feats, feats)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * feats @ feats.T, 0.0))
    np.fill_diagonal(d, 0.0)
    return float(d.sum() / (n * (n - 1)))


def diversity_ratios(
    real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray, num_classes: int
) -> list[float]:
    """Per category: diversity(generated) / diversity(real); NaN where a side has fewer than 2 samples."""
    out = []
    for c in range(num_classes):
        real_div = mean_pairwise_distance(real[real_labels == c])
        fake_div = mean_pairwise_distance(fake[fake_labels == c])
        out.append(fake_div / real_div if real_div > 0 else float("nan"))
    return out
