"""Preprocess speed: the full real Fashion-MNIST (70k IDX images) per resolution, and a folder of phone-size photos
decoded by 1, 2, ... processes (preprocess.workers).

    PYTHONPATH=. python -m benchmarks.bench_preprocess [--photos 200] [--resolutions 28,32,64,128] [--workers 1,2]
    PYTHONPATH=. python -m benchmarks.bench_preprocess --resolutions "" --photos 160 --workers 1,2   # photos only

Times the CLI end to end (`python -m productgan preprocess`, interpreter start included) on a data/ folder built
per the ingest contract in a temp dir; prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from productgan.io import atomic_write_json, sha256_file

FMNIST_DIR = Path(os.environ.get("PRODUCTGAN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
CATEGORIES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _manifest(root: Path, files: list[dict], sources: list[dict]) -> None:
    atomic_write_json(root / "manifest.json", {
        "format": "productgan-dataset/1", "categories": CATEGORIES, "sources": sources,
        "files": sorted(files, key=lambda f: f["path"]), "refused": [], "skipped": [],
    })


def fashion_mnist_data(root: Path) -> Path:
    """data/ holding the four real IDX files, as ingest writes it."""
    (root / "fashion-mnist").mkdir(parents=True)
    files = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        for kind, part in (("idx-images", "images-idx3"), ("idx-labels", "labels-idx1")):
            name = f"{prefix}-{part}-ubyte.gz"
            dest = root / "fashion-mnist" / name
            shutil.copyfile(FMNIST_DIR / name, dest)
            files.append({"path": f"fashion-mnist/{name}", "source": "fashion-mnist", "kind": kind, "split": split,
                          "category": None, "size": dest.stat().st_size, "sha256": sha256_file(dest)})
    _manifest(root, files, [{"name": "fashion-mnist", "kind": "fashion-mnist", "uri": str(FMNIST_DIR),
                             "categories": CATEGORIES}])
    return root


def photo_data(root: Path, n: int) -> Path:
    """data/ holding ``n`` 1600×1200 JPEG product photos (noise-textured so they do not compress to nothing)."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        category = CATEGORIES[i % 10]
        rel = f"shop/{category.replace('/', '_')}/{i:05d}.jpg"
        small = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((1600, 1200), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(buf.getvalue())
        files.append({"path": rel, "source": "shop", "kind": "image", "split": None, "category": category,
                      "size": len(buf.getvalue()), "sha256": sha256_file(root / rel)})
    _manifest(root, files, [{"name": "shop", "kind": "folder", "uri": "/bench/shop", "categories": CATEGORIES}])
    return root


def time_cli(data: Path, out: Path, resolution: int, channels: int = 1, workers: int = 0) -> tuple[float, str]:
    params = out.parent / f"params-workers{workers}.yaml"
    params.write_text(f"preprocess:\n  workers: {workers}\n")
    cmd = [sys.executable, "-m", "productgan", "--params", str(params), "preprocess", "--input", str(data),
           "--out", str(out), "--resolution", str(resolution), "--channels", str(channels)]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, res.stdout.strip()


def children_cpu_seconds() -> float:
    """User + system CPU time of every finished child (the CLI and its decoding processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--resolutions", default="28,32,64,128", help='"" skips Fashion-MNIST')
    ap.add_argument("--workers", default="1", help="decoding processes for the photos, comma list (0 = every core)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        tmp = Path(tmp)
        resolutions = [int(x) for x in args.resolutions.split(",") if x.strip()]
        data = fashion_mnist_data(tmp / "fmnist") if resolutions else None
        for r in resolutions:
            seconds, summary = time_cli(data, tmp / f"prep{r}", r)
            rate = 70_000 / seconds
            rows.append(f"| Fashion-MNIST IDX, 70,000 images | {r}×{r}×1 | {seconds:.1f} s | {rate:,.0f} img/s | |")
            print(summary, file=sys.stderr)
            shutil.rmtree(tmp / f"prep{r}")
        if args.photos:
            data = photo_data(tmp / "photos", args.photos)
            for workers in (int(x) for x in args.workers.split(",")):
                cpu = children_cpu_seconds()
                seconds, summary = time_cli(data, tmp / f"prep-photos-{workers}", 64, 3, workers)
                cpu = children_cpu_seconds() - cpu
                rows.append(f"| {args.photos} JPEG photos 1600×1200, {workers} process(es) | 64×64×3 | "
                            f"{seconds:.1f} s | {args.photos / seconds:,.1f} img/s | "
                            f"{cpu:.1f} s ({args.photos / cpu:,.1f} img per CPU-s) |")
                print(summary, f"(load average {os.getloadavg()[0]:.1f})", file=sys.stderr)
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores",
          file=sys.stderr)
    print("| input | output | wall time (CLI, end to end) | throughput | CPU time (all processes) |\n"
          "|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
