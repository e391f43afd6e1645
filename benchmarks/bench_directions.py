"""Latent directions: SeFa and GANSpace measured on one generator (benchmarks/RESULTS.md, "Latent directions:
SeFa and GANSpace").

  python -m benchmarks.bench_directions GENERATOR_DIR --data PREPARED --name NAME [--cache DIR] [--latents 64]

For each method, the time to find the generator's ``generate.directions`` directions (GANSpace from 2,000
sampled latents, as the product had it; one thread, three runs), then for its top directions, over ``--latents``
seeded latents with categories in turn, each moved by -s and +s latent units (each of ``--strengths``):
  pixel change    mean |edited - original| in 0..255 levels
  feature change  mean distance of the evaluate step's domain features (edited vs original), over the mean
                  distance between two different products (1.0 = as different as two random products)
  class kept      the domain classifier's accuracy on the edited images (the category asked); the originals'
                  accuracy beside it
  overlap         mean |cosine| between two directions' changes (image(+s) - image(-s)) of the same latent,
                  over pairs of top directions: 0 = they change different pixels / features, 1 = the same
and a grid per method (rows: a direction on two products; columns: -4 .. +4) in benchmarks/results/.
The domain classifier is evaluate's, of the prepared data (trained once, cached in ``--cache``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.results_file import RESULTS_DIR, save_result

GANSPACE_SAMPLES = 2000  # the product's generate.direction_samples while it used GANSpace


def methods() -> dict[str, Callable[[Any], Any]]:
    """name -> directions of a loaded ProductGenerator: the product's (SeFa) and GANSpace, as the product found them
    until this comparison (plain, and with each category's mean removed)."""
    from productgan.serve.latent import sefa_directions

    return {
        "sefa": lambda p: sefa_directions(p.generator, p.config.latent_dim, p.params.directions),
        "ganspace": lambda p: ganspace(p.generator, p.config.latent_dim, len(p.categories), p.params.directions),
        "ganspace_per_class": lambda p: ganspace(p.generator, p.config.latent_dim, len(p.categories),
                                                 p.params.directions, per_class=True),
    }


@torch.no_grad()
def ganspace(generator: torch.nn.Module, latent_dim: int, num_classes: int, count: int = 10,
             samples: int = GANSPACE_SAMPLES, seed: int = 0, per_class: bool = False) -> Any:
    """GANSpace (Härkönen et al. 2020), as serve/latent.py had it: ``samples`` seeded latents (categories in
    turn) through the generator's first layer (``first_map``), the principal components of those features (from
    the samples' Gram matrix), each carried back to latent space by least squares of z on the component scores.
    ``per_class``: each category's mean feature removed first, so the components are what z varies within a
    category rather than the differences between categories (which no step in z can make)."""
    from productgan.serve.latent import Directions

    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, latent_dim, generator=gen)
    labels = torch.arange(samples) % max(num_classes, 1)
    feats = torch.cat([generator.first_map(z[i : i + 500], labels[i : i + 500]).float().flatten(1)
                       for i in range(0, samples, 500)]).double()
    if per_class:
        for c in range(max(num_classes, 1)):
            feats[labels == c] -= feats[labels == c].mean(0)
    feats -= feats.mean(0)
    variance, vectors = torch.linalg.eigh(feats @ feats.T)
    order = torch.argsort(variance, descending=True)[: min(count, latent_dim, samples - 1)]
    scores = vectors[:, order]
    scores = (scores - scores.mean(0)) / scores.std(0)
    v = torch.linalg.lstsq(scores, z.double()).solution  # (count, latent_dim)
    v /= v.norm(dim=1, keepdim=True)
    v *= torch.sign(v.gather(1, v.abs().argmax(1, keepdim=True)))
    explained = variance[order].clamp(min=0) / variance.clamp(min=0).sum()
    return Directions(v.float(), [float(e) for e in explained])


def timed(fn: Callable[[], Any], repeats: int = 3) -> dict[str, Any]:
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": sorted(wall), "cpu_s": sorted(cpu), "load_after": [round(v, 2) for v in os.getloadavg()]}


@torch.inference_mode()
def render(generator: torch.nn.Module, z: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    from productgan.gan.sample import to_uint8

    return to_uint8(generator(z, labels))


def mean_abs_cos(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of |cos(a_i, b_i)|; rows are flattened changes of the same latent."""
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.abs(num) / np.maximum(den, 1e-12)))


def quality(product: Any, directions: Any, clf: Any, n: int, strength: float, top: int) -> dict[str, Any]:
    from productgan.gan.sample import latents

    g = product.generator
    z = latents(0, n, product.config.latent_dim)
    labels = torch.arange(n) % len(product.categories)
    base = render(g, z, labels)
    f_base, pred_base = clf.embed(base)
    pair = np.random.default_rng(0).permutation(n)
    typical = float(np.linalg.norm(f_base - f_base[pair], axis=1)[pair != np.arange(n)].mean())
    rows, deltas_px, deltas_f = [], [], []
    for k in range(min(top, len(directions))):
        d = directions.vectors[k]
        plus, minus = render(g, z + strength * d, labels), render(g, z - strength * d, labels)
        f_plus, pred_plus = clf.embed(plus)
        f_minus, pred_minus = clf.embed(minus)
        px = [np.abs(e.astype(np.float64) - base).mean() for e in (plus, minus)]
        feat = [np.linalg.norm(f - f_base, axis=1).mean() / typical for f in (f_plus, f_minus)]
        kept = float((np.concatenate([pred_plus, pred_minus]) == np.concatenate([labels, labels])).mean())
        rows.append({"direction": k, "pixel_change": float(np.mean(px)), "feature_change": float(np.mean(feat)),
                     "class_kept": kept})
        deltas_px.append((plus.astype(np.float64) - minus).reshape(n, -1))
        deltas_f.append(f_plus.astype(np.float64) - f_minus)
    pairs = [(i, j) for i in range(len(rows)) for j in range(i + 1, len(rows))]
    overlap_px = [mean_abs_cos(deltas_px[i], deltas_px[j]) for i, j in pairs]
    overlap_f = [mean_abs_cos(deltas_f[i], deltas_f[j]) for i, j in pairs]
    vec = directions.vectors[: len(rows)].double()
    gram = (vec @ vec.T).abs() - torch.eye(len(rows), dtype=torch.float64)
    return {
        "directions": len(rows), "latents": n, "strength": strength,
        "pixel_change": statistics.fmean(r["pixel_change"] for r in rows),
        "feature_change": statistics.fmean(r["feature_change"] for r in rows),
        "class_kept": statistics.fmean(r["class_kept"] for r in rows),
        "class_accuracy_unedited": float((pred_base == labels.numpy()).mean()),
        "overlap_pixels": statistics.fmean(overlap_px), "overlap_features": statistics.fmean(overlap_f),
        "latent_cosine_max": float(gram.max()),
        "typical_feature_distance": typical, "per_direction": rows,
    }


def grid(product: Any, directions: Any, top: int, category: int, out: Path) -> None:
    """Rows: each of the top directions on two products; columns: -4 .. +4."""
    from productgan.gan.sample import latents
    from productgan.render import labelled_grid, png_bytes, to_pil
    from productgan.serve.latent import strengths

    z = latents(1, 2, product.config.latent_dim)
    values = strengths(4.0, 7)
    images, labels = [], []
    for k in range(min(top, len(directions))):
        for i in range(2):
            for s in values:
                edited = z[i : i + 1] + s * directions.vectors[k]
                images.append(to_pil(render(product.generator, edited, torch.tensor([category]))[0]))
                labels.append(f"d{k} {s:+.1f}")
    cell = 2 * product.config.resolution if product.config.resolution < 48 else product.config.resolution
    out.write_bytes(png_bytes(labelled_grid(images, labels, cols=len(values), cell=cell)))
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("generator", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="The generator's prepared dataset (domain classifier).")
    ap.add_argument("--name", required=True, help="Names the results: directions_<name>.json and the grids.")
    ap.add_argument("--cache", type=Path, default=Path(".cache/bench_directions"),
                    help="Where the domain classifier is cached.")
    ap.add_argument("--latents", type=int, default=64)
    ap.add_argument("--strengths", default="1.5,3", help="Steps measured, in latent units (comma-separated).")
    ap.add_argument("--top", type=int, default=5, help="Top directions measured and drawn.")
    ap.add_argument("--category", type=int, default=0, help="Category of the grids' products.")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from productgan.metrics.domain_classifier import load_or_train
    from productgan.metrics.evaluate import EvaluateParams
    from productgan.serve.api import load

    product = load(args.generator)
    clf = load_or_train(args.data, args.cache, EvaluateParams().classifier())
    doc: dict[str, Any] = {"generator": str(args.generator), "generator_meta": product.meta,
                           "arch": product.config.arch, "resolution": product.config.resolution,
                           "channels": product.config.channels, "count": product.params.directions,
                           "ganspace_samples": GANSPACE_SAMPLES, "methods": {}}
    for name, find in methods().items():
        directions = find(product)
        row = {"time": timed(lambda f=find: f(product)), "explained": directions.explained, "at": {}}
        print(f"{name}: {statistics.median(row['time']['wall_s']):.3f} s (median of 3, one thread)", flush=True)
        for strength in (float(v) for v in args.strengths.split(",")):
            q = row["at"][f"{strength:g}"] = quality(product, directions, clf, args.latents, strength, args.top)
            print(f"  ±{strength:g}: pixel change {q['pixel_change']:.2f}  feature change {q['feature_change']:.3f}  "
                  f"class kept {q['class_kept']:.3f} (unedited {q['class_accuracy_unedited']:.3f})  overlap "
                  f"pixels {q['overlap_pixels']:.3f} features {q['overlap_features']:.3f}", flush=True)
        doc["methods"][name] = row
        grid(product, directions, args.top, args.category, RESULTS_DIR / f"directions_{args.name}_{name}.png")
    save_result("directions", args.name, doc)


if __name__ == "__main__":
    main()
