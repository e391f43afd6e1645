"""The metrics `productgan evaluate` knows: each one is a function registered with ``@metric``.

As stylegan2-ada's ``metrics/metric_main.py``: a metric is a function of the evaluation (``Evaluation``:
the params, the category names and the features of the real reference and of the generated images) that
returns the entries it adds to metrics.json. The decorator names the feature extractor it needs
(``domain``: the dataset's own classifier, cheap; ``inception``: the TF Inception of FID) and whether it is
in the default list. The known metrics, the default list (params.yaml ``evaluate.metrics``) and which
extractors an evaluation must run are all derived from these registrations: adding a metric is one
function in this file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from productgan.metrics.cache import RealFeatures
from productgan.metrics.diversity import diversity_ratios
from productgan.metrics.frechet import feature_stats, frechet_distance
from productgan.metrics.kid import kernel_inception_distance
from productgan.metrics.precision_recall import precision_recall as knn_precision_recall

if TYPE_CHECKING:
    from productgan.metrics.evaluate import EvaluateParams

EXTRACTORS = ("domain", "inception")


@dataclass
class Features:
    """One extractor's view of an evaluation: the real reference and the generated images."""

    real: RealFeatures
    fake: np.ndarray  # (N, d) of the generated images
    fake_labels: np.ndarray  # (N,) the categories they were asked for
    predictions: np.ndarray | None = None  # the domain classifier's category for each generated image
    info: dict[str, Any] = field(default_factory=dict)  # what identifies the extractor (weights, resize ...)


@dataclass
class Evaluation:
    params: EvaluateParams
    categories: list[str]
    features: dict[str, Features]  # by extractor name


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[Evaluation], dict[str, Any]]
    extractor: str  # one of EXTRACTORS
    default: bool  # in params.yaml's default `evaluate.metrics`


METRICS: dict[str, Metric] = {}


def metric(extractor: str, default: bool = True) -> Callable[[Callable], Callable]:
    """Register the decorated function as a metric under its own name."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {extractor!r}; use one of {EXTRACTORS}")

    def register(fn: Callable[[Evaluation], dict[str, Any]]) -> Callable[[Evaluation], dict[str, Any]]:
        METRICS[fn.__name__] = Metric(fn.__name__, fn, extractor, default)
        return fn

    return register


def known_metrics() -> list[str]:
    return list(METRICS)


def default_metrics() -> list[str]:
    return [name for name, m in METRICS.items() if m.default]


def extractors_for(names: list[str]) -> list[str]:
    """The feature extractors the metrics ``names`` need, in a fixed order."""
    wanted = {METRICS[n].extractor for n in names}
    return [e for e in EXTRACTORS if e in wanted]


# ------------------------------------------------------------------------------------------- helpers


def finite_or_none(x: float | None) -> float | None:
    """JSON has no NaN: undefined values become null."""
    return None if x is None or not math.isfinite(x) else float(x)


def per_category(values: list[float], categories: list[str]) -> dict[str, float | None]:
    return {name: finite_or_none(v) for name, v in zip(categories, values, strict=True)}


# ------------------------------------------------------------------------------------------- metrics


@metric("domain")
def fd_domain(ev: Evaluation) -> dict[str, Any]:
    """Fréchet distance on the domain classifier's features, overall and per category."""
    f = ev.features["domain"]
    per = []
    for c in range(len(ev.categories)):
        real, fake = f.real.features[f.real.labels == c], f.fake[f.fake_labels == c]
        enough = len(real) > 1 and len(fake) > 1
        per.append(frechet_distance(*feature_stats(real), *feature_stats(fake)) if enough else math.nan)
    return {"fd_domain": frechet_distance(f.real.mu, f.real.sigma, *feature_stats(f.fake)),
            "fd_domain_per_category": per_category(per, ev.categories)}


@metric("domain")
def kid(ev: Evaluation) -> dict[str, Any]:
    """Unbiased KID (mean and spread over random subsets) on the domain features."""
    f, p = ev.features["domain"], ev.params
    value, std = kernel_inception_distance(f.real.features, f.fake, p.kid_subsets, p.kid_subset_size, seed=p.seed)
    return {"kid": value, "kid_std": std}


@metric("domain")
def precision_recall(ev: Evaluation) -> dict[str, Any]:
    """Improved precision (fidelity) and recall (coverage) on k-NN manifolds of the domain features."""
    f = ev.features["domain"]
    precision, recall = knn_precision_recall(f.real.features, f.fake, ev.params.pr_k)
    return {"precision": precision, "recall": recall}


@metric("domain")
def class_accuracy(ev: Evaluation) -> dict[str, Any]:
    """Share of generated images the domain classifier puts in the category they were asked for."""
    f = ev.features["domain"]
    hits = f.predictions == f.fake_labels
    per = [float(hits[f.fake_labels == c].mean()) if (f.fake_labels == c).any() else math.nan
           for c in range(len(ev.categories))]
    return {"class_accuracy": float(hits.mean()), "class_accuracy_per_category": per_category(per, ev.categories)}


@metric("domain")
def diversity(ev: Evaluation) -> dict[str, Any]:
    """Per-category diversity of the generated images relative to the real ones: the mode-collapse signal."""
    f = ev.features["domain"]
    ratios = diversity_ratios(f.real.features, f.real.labels, f.fake, f.fake_labels, len(ev.categories))
    finite = [r for r in ratios if math.isfinite(r)]
    collapsed = [name for name, r in zip(ev.categories, ratios, strict=True)
                 if math.isfinite(r) and r < ev.params.collapse_threshold]
    return {"diversity_ratio_per_category": per_category(ratios, ev.categories),
            "diversity_ratio_min": finite_or_none(min(finite)) if finite else None,
            "collapsed_categories": collapsed, "mode_collapse": bool(collapsed)}


@metric("inception", default=False)
def fid(ev: Evaluation) -> dict[str, Any]:
    """FID: Fréchet distance on TF Inception pool3 features (torch-fidelity's preprocessing)."""
    f = ev.features["inception"]
    return {"fid": frechet_distance(f.real.mu, f.real.sigma, *feature_stats(f.fake)), "fid_meta": f.info}
