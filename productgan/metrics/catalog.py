"""The metrics `productgan evaluate` knows: each one is a function registered with ``@metric``.

As stylegan2-ada's ``metrics/metric_main.py``: a metric is a function of the evaluation (``Evaluation``:
the params, the category names and the features of the real reference and of the generated images) that
returns the entries it adds to metrics.json. The decorator names the feature extractor it needs
(``domain``: the dataset's own classifier, cheap; ``inception``: the TF Inception of FID) and whether it is
in the default list, and the keys of metrics.json it writes (``provides``: the register step computes only
the metrics that give its primary metric). The known metrics, the default list (params.yaml
``evaluate.metrics``) and which extractors an evaluation must run are all derived from these registrations:
adding a metric is one function in this file.

A key whose value depends on the Inception sample count says the count, as stylegan2-ada names ``fid50k``:
``fid2k`` is FID at 2,000 a side (a CPU's default), ``fid10k`` at 10,000 (a GPU's): two runs' numbers of
different counts never share a name in metrics.json, MLflow or promotion. In ``provides``, ``{n}`` stands for
the count (``count_name``); FID∞ (``fid_inf``) extrapolates to infinite N and keeps its name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from productgan.metrics.cache import RealFeatures
from productgan.metrics.diversity import diversity_ratios
from productgan.metrics.fid_infinity import fid_infinity
from productgan.metrics.frechet import feature_stats, frechet_distance, frechet_distance_samples
from productgan.metrics.kid import kernel_inception_distance
from productgan.metrics.precision_recall import precision_recall as knn_precision_recall

if TYPE_CHECKING:
    from productgan.metrics.evaluate import EvaluateParams

EXTRACTORS = ("domain", "inception")
COUNT = "{n}"  # in a metric's ``provides``: the Inception sample count a side, as ``count_name`` writes it
_COUNT_RE = r"(\d+k?)"


def count_name(n: int) -> str:
    """A sample count as metric names carry it: 2000 -> ``2k``, 10000 -> ``10k``, 500 -> ``500``."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def sample_count(key: str) -> int | None:
    """The sample count a key such as ``fid2k`` or ``fid500_per_category_mean`` names, or None."""
    m = re.fullmatch(r"fid(\d+)(k?)(_per_category\w*)?", key)
    return None if m is None else int(m.group(1)) * (1000 if m.group(2) else 1)


def fid_name(n: int, suffix: str = "") -> str:
    """The key of FID (``suffix`` e.g. ``_per_category``) at ``n`` generated samples: ``fid2k``."""
    return f"fid{count_name(n)}{suffix}"


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
    provides: tuple[str, ...] = ()  # top-level keys of metrics.json it writes (empty: just its name)

    def keys(self) -> tuple[str, ...]:
        return self.provides or (self.name,)

    def writes(self, key: str) -> bool:
        """Whether ``key`` is one of the keys it writes (a ``{n}`` in ``provides`` matches any sample count)."""
        return any(re.fullmatch(re.escape(k).replace(re.escape(COUNT), _COUNT_RE), key) for k in self.keys())


METRICS: dict[str, Metric] = {}


def metric(extractor: str, default: bool = True, provides: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Register the decorated function as a metric under its own name; ``provides``: the metrics.json keys it
    writes (default: its name)."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {extractor!r}; use one of {EXTRACTORS}")

    def register(fn: Callable[[Evaluation], dict[str, Any]]) -> Callable[[Evaluation], dict[str, Any]]:
        METRICS[fn.__name__] = Metric(fn.__name__, fn, extractor, default, provides)
        return fn

    return register


def known_metrics() -> list[str]:
    return list(METRICS)


def default_metrics() -> list[str]:
    return [name for name, m in METRICS.items() if m.default]


def metrics_providing(keys: list[str]) -> list[str]:
    """The registered metrics that write the metrics.json ``keys`` (unknown keys raise, naming the known ones)."""
    out = []
    for key in keys:
        owners = [name for name, m in METRICS.items() if m.writes(key)]
        if not owners:
            known = sorted(k for m in METRICS.values() for k in m.keys())
            raise ValueError(f"no evaluate metric writes {key!r}; known keys: {', '.join(known)}")
        out += [name for name in owners if name not in out]
    return out


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


@metric("domain", provides=("fd_domain", "fd_domain_per_category"))
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


@metric("domain", provides=("kid", "kid_std"))
def kid(ev: Evaluation) -> dict[str, Any]:
    """Unbiased KID (mean and spread over random subsets) on the domain features."""
    f, p = ev.features["domain"], ev.params
    value, std = kernel_inception_distance(f.real.features, f.fake, p.kid_subsets, p.kid_subset_size, seed=p.seed)
    return {"kid": value, "kid_std": std}


@metric("domain", provides=("precision", "recall"))
def precision_recall(ev: Evaluation) -> dict[str, Any]:
    """Improved precision (fidelity) and recall (coverage) on k-NN manifolds of the domain features."""
    f = ev.features["domain"]
    precision, recall = knn_precision_recall(f.real.features, f.fake, ev.params.pr_k)
    return {"precision": precision, "recall": recall}


@metric("domain", provides=("class_accuracy", "class_accuracy_per_category"))
def class_accuracy(ev: Evaluation) -> dict[str, Any]:
    """Share of generated images the domain classifier puts in the category they were asked for."""
    f = ev.features["domain"]
    hits = f.predictions == f.fake_labels
    per = [float(hits[f.fake_labels == c].mean()) if (f.fake_labels == c).any() else math.nan
           for c in range(len(ev.categories))]
    return {"class_accuracy": float(hits.mean()), "class_accuracy_per_category": per_category(per, ev.categories)}


@metric("domain", provides=("diversity_ratio_per_category", "diversity_ratio_min", "collapsed_categories",
                             "mode_collapse"))
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


@metric("inception", provides=("fid{n}", "fid_meta"))
def fid(ev: Evaluation) -> dict[str, Any]:
    """FID: Fréchet distance on TF Inception pool3 features (torch-fidelity's preprocessing), ``fid_n`` generated
    images (the key says how many: ``fid2k``); ``fid_meta`` says how (sample counts, weights hash, resize,
    precision): compare only like with like."""
    f = ev.features["inception"]
    return {fid_name(len(f.fake)): frechet_distance(f.real.mu, f.real.sigma, *feature_stats(f.fake)),
            "fid_meta": f.info}


@metric("inception", provides=("fid_inf", "fid_inf_fit"))
def fid_inf(ev: Evaluation) -> dict[str, Any]:
    """FID∞ (Chong & Forsyth 2020): FID at several N from the same features, extrapolated to infinite N, and
    the fit's FID at 10,000 a side (the published convention), so CPU and GPU runs compare."""
    f, p = ev.features["inception"], ev.params
    fit = fid_infinity(f.real.features, f.fake, p.fid_inf_points, p.fid_inf_min_fraction, seed=p.seed)
    return {"fid_inf": fit.intercept, "fid_inf_fit": fit.to_dict()}


@metric("inception", provides=("fid{n}_per_category", "fid{n}_per_category_mean", "fid{n}_per_category_n"))
def fid_per_category(ev: Evaluation) -> dict[str, Any]:
    """Intra-FID (Miyato & Koyama 2018): FID between the real and generated images of each category, and their
    mean, named by the evaluation's count (``fid2k_per_category``). Each has ~fid_n / categories samples a side,
    so it is biased upwards more than FID: compare intra-FIDs of equal counts (``..._per_category_n``)."""
    f = ev.features["inception"]
    values, counts = [], {}
    for c, name in enumerate(ev.categories):
        real, fake = f.real.features[f.real.labels == c], f.fake[f.fake_labels == c]
        counts[name] = [int(len(real)), int(len(fake))]
        values.append(frechet_distance_samples(real, fake) if min(len(real), len(fake)) > 1 else math.nan)
    finite = [v for v in values if math.isfinite(v)]
    n = len(f.fake)
    return {fid_name(n, "_per_category"): per_category(values, ev.categories),
            fid_name(n, "_per_category_mean"): finite_or_none(float(np.mean(finite))) if finite else None,
            fid_name(n, "_per_category_n"): counts}
