"""Score a generator against the real data: the library behind `productgan evaluate` and the register step.

Public API (champion and challenger are scored on the same evaluation set with the same extractors when
they get the same ``data_dir``, ``params`` and ``cache_dir``):

    evaluate_generator(generator, config, data_dir, params=None, cache_dir=None, device=None) -> dict
        ``generator``: nn.Module from productgan.gan.export.load_generator, ``config``: its GeneratorConfig.
    evaluate_samples(sample_fn, data_dir, params=None, cache_dir=None, categories=None, device=None) -> dict
        ``sample_fn(labels: int64 (N,), seed: int) -> uint8 (N, C, H, W)``: any image source (tests pass
        fakes: noise, a constant, real images).
    generator_sample_fn(generator, latent_dim, truncation=None, batch_size=500) -> SampleFn

The returned dict is what `productgan evaluate` writes as metrics.json (see README "## Evaluate"):
``fd_domain``, ``kid``/``kid_std``, ``precision``/``recall``, ``class_accuracy`` (+ per category),
``fd_domain_per_category``, ``diversity_ratio_per_category``/``diversity_ratio_min``/``mode_collapse``,
``domain_classifier`` (its own test accuracy), optionally ``fid`` + ``fid_meta``, and ``meta``.

Generated samples follow the category mix of the real reference: the reference is the first ``n`` images of
a fixed permutation of ``real_split`` (all of it when ``n`` is larger), and generation asks for exactly
their labels (cycled when ``n`` exceeds the split).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from productgan.data.arrays import images_path, labels_path, load_manifest, load_split
from productgan.io import sha256_file
from productgan.metrics import cache
from productgan.metrics.diversity import diversity_ratios
from productgan.metrics.domain_classifier import ClassifierSettings, DomainClassifier, load_or_train
from productgan.metrics.frechet import feature_stats, frechet_distance
from productgan.metrics.kid import kernel_inception_distance
from productgan.metrics.precision_recall import precision_recall
from productgan.params import ParamsError

log = logging.getLogger(__name__)

SampleFn = Callable[[np.ndarray, int], np.ndarray]

KNOWN_METRICS = ("fid", "fd_domain", "kid", "precision_recall", "class_accuracy", "diversity")
DOMAIN_METRICS = ("fd_domain", "kid", "precision_recall", "class_accuracy", "diversity")
REFERENCE_SEED = 0  # fixed: the real reference subset must not move with the sampling seed


@dataclass
class EvaluateParams:
    """The ``evaluate`` section of params.yaml (defaults equal to the shipped file)."""

    metrics: list[str] = field(
        default_factory=lambda: ["fd_domain", "kid", "precision_recall", "class_accuracy", "diversity"]
    )
    n: int = 10000
    real_split: str = "test"
    seed: int = 0
    truncation: float | None = None
    batch_size: int = 500
    fid_n: int = 10000
    inception_weights: str | None = None
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3
    collapse_threshold: float = 0.5
    classifier_steps: int = 800
    classifier_batch_size: int = 128
    classifier_lr: float = 0.002
    classifier_seed: int = 0
    classifier_width: int = 16
    grid_per_category: int = 10
    cache_dir: str | None = None
    device: str = "auto"

    def validate(self) -> None:
        unknown = sorted(set(self.metrics) - set(KNOWN_METRICS))
        if unknown:
            raise ParamsError(
                f"evaluate.metrics: unknown metric(s) {', '.join(unknown)}; known: {', '.join(KNOWN_METRICS)}"
            )
        if self.n < 2 or self.fid_n < 2:
            raise ParamsError(f"evaluate: n={self.n} and fid_n={self.fid_n} must be at least 2")

    def classifier(self) -> ClassifierSettings:
        return ClassifierSettings(
            steps=self.classifier_steps,
            batch_size=self.classifier_batch_size,
            lr=self.classifier_lr,
            seed=self.classifier_seed,
            width=self.classifier_width,
        )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _progress() -> bool:
    return sys.stderr.isatty()


def generator_sample_fn(
    generator: torch.nn.Module, latent_dim: int, truncation: float | None = None, batch_size: int = 500
) -> SampleFn:
    """Seeded sampling from a generator; the same images as productgan.gan.sample.generate_uint8."""
    from productgan.gan.sample import latents, to_uint8

    @torch.inference_mode()
    def sample(labels: np.ndarray, seed: int) -> np.ndarray:
        labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        z = latents(seed, len(labels_t), latent_dim, truncation)
        device = next(generator.parameters()).device
        out = []
        for i in tqdm(
            range(0, len(labels_t), batch_size), desc="evaluate: generate", disable=not _progress(), leave=False
        ):
            out.append(to_uint8(generator(z[i : i + batch_size].to(device), labels_t[i : i + batch_size].to(device))))
        return np.concatenate(out)

    return sample


def _finite(x: float) -> float | None:
    """JSON has no NaN: undefined values become null."""
    return None if x is None or not math.isfinite(x) else float(x)


def _split_fingerprint(data_dir: Path, split: str) -> str:
    return sha256_file(images_path(data_dir, split))[:16] + sha256_file(labels_path(data_dir, split))[:16]


def _real_features(
    extract: Callable[[np.ndarray], np.ndarray],
    identity: str,
    real_images: np.ndarray,
    real_labels: np.ndarray,
    order: np.ndarray,
    n: int,
    data_dir: Path,
    split: str,
    manifest: dict[str, Any],
    cache_dir: Path,
) -> cache.RealFeatures:
    """Features of the real reference (first ``n`` of ``order``), from the cache when present."""
    key = {
        "extractor": identity,
        "dataset_hash": manifest.get("dataset_hash"),
        "split": split,
        "split_content": _split_fingerprint(data_dir, split),
        "n": int(n),
        "resolution": int(real_images.shape[-1]),
        "channels": int(real_images.shape[1]),
        "reference_seed": REFERENCE_SEED,
    }
    hit = cache.load_real(cache_dir, key)
    if hit is not None:
        return hit
    idx = order[:n]
    feats = extract(np.asarray(real_images[idx]))
    mu, sigma = feature_stats(feats)
    real = cache.RealFeatures(feats.astype(np.float32), np.asarray(real_labels[idx], np.int64), mu, sigma, cached=False)
    path = cache.save_real(cache_dir, key, real)
    log.info("evaluate: real statistics cached in %s", path)
    return real


def _per_category(values: list[float], categories: list[str]) -> dict[str, float | None]:
    return {name: _finite(v) for name, v in zip(categories, values, strict=True)}


def _domain_metrics(
    params: EvaluateParams,
    clf: DomainClassifier,
    real: cache.RealFeatures,
    fake_images: np.ndarray,
    fake_labels: np.ndarray,
    categories: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    t0 = time.perf_counter()
    fake, preds = clf.embed(fake_images, params.batch_size)
    timings["domain_features_generated"] = time.perf_counter() - t0
    wanted, k = set(params.metrics), len(categories)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    if "fd_domain" in wanted:
        out["fd_domain"] = frechet_distance(real.mu, real.sigma, *feature_stats(fake))
        per = []
        for c in range(k):
            r, f = real.features[real.labels == c], fake[fake_labels == c]
            per.append(
                frechet_distance(*feature_stats(r), *feature_stats(f)) if len(r) > 1 and len(f) > 1 else math.nan
            )
        out["fd_domain_per_category"] = _per_category(per, categories)
    if "kid" in wanted:
        out["kid"], out["kid_std"] = kernel_inception_distance(
            real.features, fake, params.kid_subsets, params.kid_subset_size, seed=params.seed
        )
    if "precision_recall" in wanted:
        out["precision"], out["recall"] = precision_recall(real.features, fake, params.pr_k)
    if "class_accuracy" in wanted:
        hits = preds == fake_labels
        out["class_accuracy"] = float(hits.mean())
        out["class_accuracy_per_category"] = _per_category(
            [float(hits[fake_labels == c].mean()) if (fake_labels == c).any() else math.nan for c in range(k)],
            categories,
        )
    if "diversity" in wanted:
        ratios = diversity_ratios(real.features, real.labels, fake, fake_labels, k)
        finite = [r for r in ratios if math.isfinite(r)]
        collapsed = [
            name
            for name, r in zip(categories, ratios, strict=True)
            if math.isfinite(r) and r < params.collapse_threshold
        ]
        out["diversity_ratio_per_category"] = _per_category(ratios, categories)
        out["diversity_ratio_min"] = _finite(min(finite)) if finite else None
        out["collapsed_categories"] = collapsed
        out["mode_collapse"] = bool(collapsed)
    timings["domain_metrics"] = time.perf_counter() - t0
    return out


def evaluate_samples(
    sample_fn: SampleFn,
    data_dir: str | os.PathLike[str],
    params: EvaluateParams | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    categories: list[str] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Metrics of the images ``sample_fn`` makes against the real ``params.real_split`` of ``data_dir``.

    ``categories``: the generator's category names; they must equal the dataset's (same order).
    ``cache_dir``: real-statistics and classifier cache (default: params.cache_dir, $PRODUCTGAN_CACHE,
    .cache/productgan). ``device``: for feature extraction (default: params.device).
    """
    from productgan.metrics.inception import RESIZE, InceptionExtractor, resolve_weights

    params = params or EvaluateParams()
    params.validate()
    wanted = set(params.metrics)
    data_dir = Path(data_dir)
    cache_dir = cache.cache_root(cache_dir or params.cache_dir)
    dev = torch.device(device) if device is not None else resolve_device(params.device)
    weights = resolve_weights(params.inception_weights) if "fid" in wanted else None  # fail before any work

    manifest = load_manifest(data_dir)
    data_categories = list(manifest["categories"])
    if categories is not None and list(categories) != data_categories:
        raise ValueError(
            f"evaluate: the generator's categories {list(categories)} differ from {data_dir}'s {data_categories}; "
            "evaluate a generator against the prepared data it was trained on"
        )
    real_images, real_labels = load_split(data_dir, params.real_split)
    if len(real_images) < 2:
        raise ValueError(
            f"evaluate: {data_dir} split {params.real_split!r} has {len(real_images)} images; need 2 or more"
        )
    order = np.random.default_rng(REFERENCE_SEED).permutation(len(real_images))
    n_domain = min(params.n, len(real_images)) if wanted & set(DOMAIN_METRICS) else 0
    n_fid = min(params.fid_n, len(real_images)) if weights is not None else 0
    n_gen = max(params.n if n_domain else 0, params.fid_n if n_fid else 0)
    gen_labels = np.asarray(real_labels[order], np.int64)[np.arange(n_gen) % len(real_images)]

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fake_images = np.asarray(sample_fn(gen_labels, params.seed))
    timings["generate"] = time.perf_counter() - t0
    expected = (n_gen, *real_images.shape[1:])
    if fake_images.dtype != np.uint8 or fake_images.shape != expected:
        raise ValueError(
            f"evaluate: the generator made {fake_images.dtype} {fake_images.shape}, expected uint8 {expected} "
            f"like {data_dir}/{params.real_split}_images.npy; evaluate against the data it was trained on"
        )

    result: dict[str, Any] = {}
    cache_state: dict[str, str] = {}
    extractor_images: dict[str, int] = {}
    if n_domain:
        t0 = time.perf_counter()
        clf = load_or_train(data_dir, cache_dir, params.classifier(), params.real_split, dev)
        timings["domain_classifier"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        real = _real_features(
            lambda x: clf.features(x, params.batch_size),
            clf.identity,
            real_images,
            real_labels,
            order,
            n_domain,
            data_dir,
            params.real_split,
            manifest,
            cache_dir,
        )
        timings["domain_features_real"] = time.perf_counter() - t0
        cache_state["domain"] = "hit" if real.cached else "miss"
        result.update(
            _domain_metrics(
                params, clf, real, fake_images[: params.n], gen_labels[: params.n], data_categories, timings
            )
        )
        extractor_images["domain"] = clf.images_seen
        result["domain_classifier"] = {
            "test_accuracy": clf.info.get("test_accuracy"),
            "eval_split": clf.info.get("eval_split"),
            "key": clf.key,
            "cached": bool(clf.info.get("cached")),
            "feature_dim": clf.info.get("feature_dim"),
            "train_images": clf.info.get("train_images"),
            "steps": params.classifier_steps,
        }
    if n_fid:
        t0 = time.perf_counter()
        inception = InceptionExtractor(weights, dev)
        real = _real_features(
            inception.features,
            inception.identity,
            real_images,
            real_labels,
            order,
            n_fid,
            data_dir,
            params.real_split,
            manifest,
            cache_dir,
        )
        timings["inception_features_real"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fake = inception.features(fake_images[: params.fid_n])
        timings["inception_features_generated"] = time.perf_counter() - t0
        result["fid"] = frechet_distance(real.mu, real.sigma, *feature_stats(fake))
        cache_state["inception"] = "hit" if real.cached else "miss"
        extractor_images["inception"] = inception.images_seen
        result["fid_meta"] = {
            "library": "productgan.metrics (torch-fidelity's preprocessing and pool3 features)",
            "network": "inception-2015-12-05 (TF graph as TorchScript)",
            "weights": str(weights),
            "weights_sha256": inception.sha256,
            "resize": RESIZE,
            "n_generated": int(params.fid_n),
            "n_real": int(n_fid),
            "real_split": params.real_split,
        }
    result["meta"] = {
        "metrics": list(params.metrics),
        "n_generated": int(params.n) if n_domain else 0,
        "n_real": int(n_domain),
        "real_split": params.real_split,
        "seed": params.seed,
        "truncation": params.truncation,
        "precision_recall_k": params.pr_k,
        "collapse_threshold": params.collapse_threshold,
        "categories": data_categories,
        "dataset_hash": manifest.get("dataset_hash"),
        "real_stats_cache": cache_state,
        "extractor_images": extractor_images,
        "device": str(dev),
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    return result


def evaluate_generator(
    generator: torch.nn.Module,
    config: Any,
    data_dir: str | os.PathLike[str],
    params: EvaluateParams | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """evaluate_samples for a loaded generator (``config``: its GeneratorConfig)."""
    params = params or EvaluateParams()
    sample_fn = generator_sample_fn(generator, config.latent_dim, params.truncation, params.batch_size)
    result = evaluate_samples(sample_fn, data_dir, params, cache_dir, list(config.categories), device)
    result["meta"]["generator"] = {
        k: config.meta.get(k) for k in ("recipe", "step", "dataset_version", "params_hash") if k in config.meta
    }
    return result
