"""Projection of held-out real photos into a trained generator (benchmarks/RESULTS.md, "Editing through the
generator"), and the picture in docs/generate.md.

  python -m benchmarks.bench_project GENERATOR_DIR [--per-class 3] [--picture docs/project.png]

For ``per-class`` images of each category of the Fashion-MNIST **test** split (never trained on), seeded:
project with the photo's own category, with and without the encoder warm start, and record the domain-feature
distance, the pixel error, the time per image (CPU seconds of this process and wall seconds; 1 thread), and
whether the evaluate step's domain classifier puts the reconstruction in the photo's category (for reference:
how often it puts the photo itself there). Settings: params.yaml `project` defaults. The domain classifier is
the one of `benchmarks.bench_article` (full Fashion-MNIST, evaluate's settings, cached in its workdir).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_article import WORKDIR, prepared, save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("generator", type=Path)
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--picture", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from productgan.data.arrays import load_split
    from productgan.metrics.domain_classifier import load_or_train
    from productgan.metrics.evaluate import EvaluateParams
    from productgan.serve.api import load
    from productgan.serve.project import ProjectParams, project, train_encoder

    data = prepared()
    product = load(args.generator)
    params = ProjectParams()
    clf = load_or_train(data, WORKDIR / "cache", EvaluateParams().classifier())
    clf.net.requires_grad_(False)

    def features(x: torch.Tensor) -> torch.Tensor:
        return clf.net(x)[0]

    xt, yt = load_split(data, "test")
    rng = np.random.default_rng(0)
    picks = [int(i) for c in range(10) for i in rng.choice(np.flatnonzero(yt == c), args.per_class, replace=False)]
    c0, t0 = time.process_time(), time.time()
    encoder = train_encoder(product.generator, product.config.latent_dim, 10, params, cache_dir=WORKDIR / "cache")
    encoder_cost = {"cpu_s": time.process_time() - c0, "wall_s": time.time() - t0, "steps": params.encoder_steps}

    rows = []
    for mode, enc in (("random start", None), ("encoder warm start", encoder)):
        for i in picks:
            c0 = time.process_time()
            p = project(product.generator, xt[i], int(yt[i]), product.config.latent_dim, params, features, enc)
            cpu = time.process_time() - c0
            _, pred = clf.embed(p.reconstruction[None])
            _, pred_photo = clf.embed(xt[i][None])
            rows.append({"mode": mode, "index": i, "label": int(yt[i]), "feature_distance": p.feature_distance,
                         "pixel_mse": p.pixel_mse, "wall_s": p.seconds, "cpu_s": cpu,
                         "reconstruction_class": int(pred[0]), "photo_class": int(pred_photo[0])})
            print(json.dumps(rows[-1]), flush=True)

    summary = {}
    for mode in ("random start", "encoder warm start"):
        r = [x for x in rows if x["mode"] == mode]
        summary[mode] = {
            "images": len(r),
            "feature_distance_median": statistics.median(x["feature_distance"] for x in r),
            "feature_distance_mean": statistics.fmean(x["feature_distance"] for x in r),
            "pixel_rmse_0_255_median": statistics.median(np.sqrt(x["pixel_mse"]) * 127.5 for x in r),
            "cpu_s_per_image_median": statistics.median(x["cpu_s"] for x in r),
            "wall_s_per_image_median": statistics.median(x["wall_s"] for x in r),
            "reconstruction_class_agrees": statistics.fmean(x["reconstruction_class"] == x["label"] for x in r),
            "photo_class_agrees": statistics.fmean(x["photo_class"] == x["label"] for x in r),
        }
    print(json.dumps(summary, indent=2))
    save("project", {"generator": str(args.generator), "generator_meta": product.meta, "params": vars(params),
                     "threads": args.threads, "encoder": encoder_cost, "summary": summary, "rows": rows})
    if args.picture:
        picture(product, xt, yt, picks, args.per_class, params, features, encoder, args.picture)


def picture(product, xt, yt, picks, per_class, params, features, encoder, out: Path) -> None:  # noqa: ANN001
    """Rows: a photo, its projection, and edits through the generator (another category, two directions),
    then an image edit on top (navy)."""
    from productgan.render import labelled_grid, png_bytes, to_pil
    from productgan.serve.project import project

    chosen = [picks[per_class * c] for c in (3, 0, 7)]  # a dress, a T-shirt, a sneaker
    swap = {3: "Coat", 0: "Shirt", 7: "Sandal"}
    images, labels = [], []
    for i in chosen:
        label = int(yt[i])
        name = product.categories[label]
        p = project(product.generator, xt[i], label, product.config.latent_dim, params, features, encoder)
        z = product.check_latent(p.latent)
        edits = [("photo (test set)", to_pil(xt[i])), ("projection", to_pil(p.reconstruction)),
                 (f"-> {swap[label]}", to_pil(product.render_latents(z, name, {"to_category": swap[label]})[0])),
                 ("direction 0, -3", to_pil(product.render_latents(z, name, {"direction": 0, "strength": -3.0})[0])),
                 ("direction 0, +3", to_pil(product.render_latents(z, name, {"direction": 0, "strength": 3.0})[0])),
                 ("direction 1, +3", to_pil(product.render_latents(z, name, {"direction": 1, "strength": 3.0})[0])),
                 ("+ color navy", product.generate(name, latent=p.latent, direction=1, strength=3.0,
                                                   color="navy")[0])]
        for text, image in edits:
            images.append(image)
            labels.append(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png_bytes(labelled_grid(images, labels, cols=7, cell=84)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
