"""Is a faster way of computing Inception features exact enough for FID? The acceptance rule of issue #15.

A fast path (bf16 autocast, another layout, a fused or exported graph) changes the features a little; what
matters is the score. The check computes the FID of the same real and generated images with the reference
path (fp32) and with the candidate, and accepts the candidate only if the two FIDs differ by less than
``TOLERANCE`` (0.5%) relative. Run it on a trained generator at the CPU sample count:
``python -m benchmarks.bench_inception check --generator DIR`` (numbers in benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from productgan.metrics.frechet import frechet_distance_features

TOLERANCE = 0.005  # relative FID difference a fast path may add

Extract = Callable[[np.ndarray], np.ndarray]  # uint8 images (N, C, H, W) -> features (N, d)


@dataclass(frozen=True)
class PrecisionCheck:
    reference: str
    candidate: str
    n_real: int
    n_generated: int
    fid_reference: float
    fid_candidate: float
    relative_difference: float  # |candidate - reference| / reference
    tolerance: float
    accepted: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def compare_fids(fid_reference: float, fid_candidate: float, tolerance: float = TOLERANCE) -> tuple[float, bool]:
    """(relative difference, accepted) of two FIDs of the same images."""
    if not fid_reference > 0:
        raise ValueError(f"precision check: the reference FID is {fid_reference!r}; it needs a positive FID "
                         "(a real generator, not the real images themselves)")
    rel = abs(fid_candidate - fid_reference) / fid_reference
    return rel, bool(rel < tolerance)


def check_precision(
    reference: Extract, candidate: Extract, real: np.ndarray, generated: np.ndarray,
    names: tuple[str, str] = ("fp32", "candidate"), tolerance: float = TOLERANCE,
    reference_features: tuple[np.ndarray, np.ndarray] | None = None,
) -> PrecisionCheck:
    """FID of ``real`` vs ``generated`` by ``reference`` and by ``candidate`` feature extractors, compared.
    ``reference_features``: (real, generated) features of the reference already computed (skips that work)."""
    ref_real, ref_fake = reference_features or (reference(real), reference(generated))
    fid_ref = frechet_distance_features(ref_real, ref_fake)
    fid_cand = frechet_distance_features(candidate(real), candidate(generated))
    rel, ok = compare_fids(fid_ref, fid_cand, tolerance)
    return PrecisionCheck(names[0], names[1], len(real), len(generated), fid_ref, fid_cand, rel, tolerance, ok)
