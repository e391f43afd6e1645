"""Evaluation speed on the real Fashion-MNIST: the default domain metrics (fd_domain, KID, precision/recall,
class accuracy, diversity) at N = 10,000 generated vs the 10,000 test images, generation included, cold
(classifier training + real features) and warm (real statistics cached); Inception feature throughput on the
CPU and, when there is one, on the GPU. Prints a Markdown section for benchmarks/RESULTS.md.

    PYTHONPATH=. python benchmarks/bench_evaluate.py [--work DIR] [--n 10000] [--generator DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the IDX reader and write_prepared of the test fixtures

from conftest import FMNIST_CATEGORIES, FMNIST_DIR, read_idx, write_prepared  # noqa: E402

from productgan.gan.config import GeneratorConfig  # noqa: E402
from productgan.gan.export import load_generator  # noqa: E402
from productgan.gan.networks import build_generator  # noqa: E402
from productgan.metrics.evaluate import EvaluateParams, evaluate_generator, generator_sample_fn  # noqa: E402
from productgan.metrics.inception import InceptionExtractor, resolve_weights  # noqa: E402


def full_prepared(root: Path) -> Path:
    """All of Fashion-MNIST as a prepared folder: 54k train, 6k val, 10k test at 28×28×1."""
    if (root / "manifest.json").is_file():
        return root
    x = read_idx(FMNIST_DIR / "train-images-idx3-ubyte.gz")[:, None].copy()
    y = read_idx(FMNIST_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    xt = read_idx(FMNIST_DIR / "t10k-images-idx3-ubyte.gz")[:, None].copy()
    yt = read_idx(FMNIST_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    splits = {"train": (x[:54000], y[:54000]), "val": (x[54000:], y[54000:]), "test": (xt, yt)}
    return write_prepared(root, splits, FMNIST_CATEGORIES)


def load_avg() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def cpu_seconds() -> float:
    """CPU time of this process, all threads: on a shared machine a steadier measure than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def inception_rate(device: str, images: np.ndarray) -> float:
    ext = InceptionExtractor(resolve_weights(), device)
    ext.features(images[:8], progress=False)  # warm-up (TorchScript profiling runs)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    ext.features(images, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/productgan-bench-evaluate"))
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--generator", type=Path, default=None, help="a trained generator folder (default: random dcgan)")
    ap.add_argument("--inception-images", type=int, default=64)
    ap.add_argument("--reuse-cache", action="store_true", help="keep the classifier and real statistics of a last run")
    args = ap.parse_args()

    data = full_prepared(args.work / "prepared")
    cache_dir = args.work / "cache"
    if not args.reuse_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    if args.generator:
        gen, cfg = load_generator(args.generator)
        source = str(args.generator)
    else:
        torch.manual_seed(0)
        cfg = GeneratorConfig(categories=FMNIST_CATEGORIES)  # the default dcgan: base 64, latent 128
        gen, source = build_generator(cfg).eval(), "random-init dcgan (GeneratorConfig defaults)"
    params = EvaluateParams(n=args.n)

    t0 = time.perf_counter()
    generator_sample_fn(gen, cfg.latent_dim)(np.zeros(args.n, np.int64), 1)
    gen_s = time.perf_counter() - t0

    load_before = load_avg()
    t0 = time.perf_counter()
    cold = evaluate_generator(gen, cfg, data, params, cache_dir)
    cold_s = time.perf_counter() - t0
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    warm = evaluate_generator(gen, cfg, data, params, cache_dir)
    warm_s, warm_cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    load_after = load_avg()
    assert warm["meta"]["real_stats_cache"] == {"domain": "hit"}

    xt = read_idx(FMNIST_DIR / "t10k-images-idx3-ubyte.gz")[: args.inception_images, None].copy()
    cpu_rate = inception_rate("cpu", xt)
    gpu_rate = inception_rate("cuda", xt) if torch.cuda.is_available() else None

    secs = warm["meta"]["seconds"]
    print("## Evaluate\n")
    print(
        f"`PYTHONPATH=. python benchmarks/bench_evaluate.py` on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; load average "
        f"{load_before} before, {load_after} after (the machine is shared with other work).\n"
    )
    print(f"Generator: {source}. N = {args.n} generated vs {warm['meta']['n_real']} real test images.\n")
    print("| what | seconds |\n|---|---|")
    print(f"| generation alone ({args.n} images) | {gen_s:.1f} |")
    first = "cold: train classifier + real features + the rest" if not args.reuse_cache else "first (cache reused)"
    print(f"| {first} | {cold_s:.1f} |")
    print(f"| **warm evaluation, real statistics cached (target <= 60 s)** | **{warm_s:.1f}** |")
    print(f"| warm evaluation: CPU time of the process, all threads (2 idle cores: about half) | {warm_cpu:.1f} |")
    for key, val in secs.items():
        print(f"| warm: {key} | {val:.1f} |")
    print(
        f"\nDomain classifier: {cold['domain_classifier']['train_images']} train images, "
        f"{params.classifier_steps} steps, test accuracy {cold['domain_classifier']['test_accuracy']:.4f}; "
        f"cold classifier time {cold['meta']['seconds']['domain_classifier']:.1f} s.\n"
    )
    print(
        f"Inception (inception-2015-12-05, 28->299 TF1 bilinear), {args.inception_images} images: "
        f"CPU {cpu_rate:.1f} img/s"
        + (f", GPU {gpu_rate:.1f} img/s" if gpu_rate else ", no GPU on this machine")
        + f" -> `fid` at 10k+10k images takes about {20000 / cpu_rate / 60:.0f} min on this CPU.\n"
    )
    print(
        f"Scores of this generator ({source}): "
        + ", ".join(f"{k} {warm[k]:.4g}" for k in ("fd_domain", "kid", "precision", "recall", "class_accuracy"))
    )


if __name__ == "__main__":
    main()
