"""Ingest timings: the real Fashion-MNIST through the CLI (cold process, as `dvc repro`/`make run` call it),
and a folder of many small photos (per-file overhead: listing, hashing, fsync).

    PYTHONPATH=$PWD python benchmarks/bench_ingest.py [--photos 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cli(args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "productgan", "ingest", *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - t


def _sha(path: Path) -> str:
    from productgan.io import sha256_file

    return sha256_file(path)


def _photo_folder(root: Path, n: int) -> None:
    """``n`` real Fashion-MNIST images as PNG files, in 10 category folders."""
    import numpy as np
    from PIL import Image

    fm = Path(os.environ.get("PRODUCTGAN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
    raw = gzip.decompress((fm / "train-images-idx3-ubyte.gz").read_bytes())
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    for i in range(n):
        d = root / f"category_{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(images[i]).save(buf, format="PNG")
        (d / f"{i:06d}.png").write_bytes(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        out = tmp_path / "fm"
        times, shas = [], set()
        for _ in range(a.runs):
            times.append(_cli(["--source", "fashion-mnist", "--out", str(out)]))
            shas.add(_sha(out / "manifest.json"))
        print(f"fashion-mnist (30.9 MB, 4 files): median {statistics.median(times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)}); manifest sha256 {'/'.join(sorted(shas))}")
        src = tmp_path / "shop"
        _photo_folder(src, a.photos)
        times = [_cli(["--source", str(src), "--out", str(tmp_path / "shopdata")]) for _ in range(a.runs)]
        med = statistics.median(times)
        print(f"folder of {a.photos} PNG photos: median {med:.2f} s ({a.photos / med:.0f} files/s)")


if __name__ == "__main__":
    main()
