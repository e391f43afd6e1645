"""Generate / edit / encode speed on the CPU: what one server request costs.

Run: PYTHONPATH=$PWD python benchmarks/bench_generate.py  (prints a Markdown table)
Uses a random-weight generator of the default size (dcgan, 28 px, latent 128, base 64): speed does not
depend on the weights.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from PIL import Image, ImageDraw

from productgan.gan.config import GeneratorConfig
from productgan.gan.networks import build_generator
from productgan.render import png_base64, to_pil
from productgan.serve.api import ProductGenerator
from productgan.serve.edit import apply_edits


def timeit(fn: Callable[[], object], repeat: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    cfg = GeneratorConfig(categories=[f"c{i}" for i in range(10)])
    product = ProductGenerator(build_generator(cfg).eval(), cfg)
    images = [to_pil(a) for a in product.generate_arrays("c3", n=64, seed=1)]
    photo = Image.new("RGB", (1024, 1024), "white")
    ImageDraw.Draw(photo).ellipse((200, 150, 820, 900), fill=(40, 90, 200))

    rows = []
    t = timeit(lambda: product.generate_arrays("c3", n=64, seed=1))
    rows.append(("generator forward, n=64 (28 px)", t, 64))
    t = timeit(lambda: [png_base64(i) for i in images])
    rows.append(("PNG + base64, 64 images (28 px)", t, 64))
    t = timeit(lambda: [apply_edits(i, color="#aa3355") for i in images])
    rows.append(("recolour, 64 images (28 px)", t, 64))
    t = timeit(lambda: [apply_edits(i, color="#aa3355", scale=0.8, rotate=15, size=256) for i in images])
    rows.append(("recolour+scale+rotate+size 256, 64 images", t, 64))
    t = timeit(lambda: product.generate("c3", n=64, seed=1, color="#aa3355", rotate=15), repeat=3)
    rows.append(("API generate n=64 with colour+rotate (28 px)", t, 64))
    t = timeit(lambda: apply_edits(photo, color="#aa3355", scale=0.8, rotate=15), repeat=3)
    rows.append(("photo 1024x1024: recolour+scale+rotate", t, 1))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.machine()}")
    print("| what | median s | images/s |\n|---|---|---|")
    for name, secs, n in rows:
        print(f"| {name} | {secs:.4f} | {n / secs:.0f} |")


if __name__ == "__main__":
    main()
