"""Real-data feature cache: features of the real reference images, keyed by (extractor, dataset hash, split,
split content, N, resolution), so a second evaluation of the same data pays only for the generated side.

The extractor's identity names its weights (hash), resize and precision: Inception features in bf16 and in fp32
are separate entries. Every later evaluate, the register step's re-scoring and (through a volume mounted at
``$PRODUCTGAN_CACHE``, pipelines/scaling.py) every pipeline run of the same dataset version read the entry the
first one wrote.

Files: ``<cache>/real_stats/<sha>.npz`` (features float32, labels, mean and covariance float64 and the key
itself, checked on load) written atomically; np.load with allow_pickle=False.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from productgan.io import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_ENV = "PRODUCTGAN_CACHE"
DEFAULT_CACHE = Path(".cache") / "productgan"
FORMAT = 1


def cache_root(configured: str | os.PathLike[str] | None = None) -> Path:
    """params ``evaluate.cache_dir``, else ``$PRODUCTGAN_CACHE``, else ``.cache/productgan`` (in the CWD)."""
    return Path(configured or os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


@dataclass
class RealFeatures:
    features: np.ndarray  # float32 (N, d)
    labels: np.ndarray  # int64 (N,)
    mu: np.ndarray  # float64 (d,)
    sigma: np.ndarray  # float64 (d, d)
    cached: bool  # True when read from the cache


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps({"format": FORMAT, **key}, sort_keys=True, default=str)


def stats_path(root: str | os.PathLike[str], key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(_key_text(key).encode()).hexdigest()[:24]
    return Path(root) / "real_stats" / f"{digest}.npz"


def load_real(root: str | os.PathLike[str], key: dict[str, Any]) -> RealFeatures | None:
    """The cached entry for ``key``, or None (missing, unreadable or written for another key)."""
    path = stats_path(root, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != _key_text(key):
                log.warning("evaluate: %s holds statistics for another key; recomputing", path)
                return None
            return RealFeatures(z["features"], z["labels"], z["mu"], z["sigma"], cached=True)
    except (OSError, ValueError, KeyError) as exc:  # a damaged file is recomputed, not trusted
        log.warning("evaluate: unreadable real-statistics cache %s (%s); recomputing", path, exc)
        return None


def save_real(root: str | os.PathLike[str], key: dict[str, Any], real: RealFeatures) -> Path | None:
    """Store ``real`` under ``key``; returns the file, or None when the cache folder is not writable (a warning
    names it: the evaluation goes on, the next one recomputes)."""
    path = stats_path(root, key)
    buf = io.BytesIO()
    np.savez(
        buf, key=np.array(_key_text(key)), features=real.features, labels=real.labels, mu=real.mu, sigma=real.sigma
    )
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        log.warning("evaluate: cannot write the real-statistics cache %s (%s); every evaluation will recompute "
                    "them: make the folder writable or point evaluate.cache_dir / $%s elsewhere", path, exc, CACHE_ENV)
        return None
    return path
