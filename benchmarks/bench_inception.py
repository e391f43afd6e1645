"""Inception (FID) on a CPU: how fast each option runs, and whether the fast ones are exact enough.

  python -m benchmarks.bench_inception speed [--threads 1 2] [--batches 8 32] [--rounds 2] [--options ...]
      images/s and images per CPU-second of the Inception features (preprocessing included) for each option:
      precision (fp32 | bf16 | fp16 autocast), channels_last, torch.jit.freeze + optimize_for_inference
      (oneDNN fusion), batch size, threads. Each measurement runs in a fresh process, the options interleaved
      round by round, so a shared machine's load falls on all alike; images per CPU-second is the number that
      load disturbs least (on 2 quiet cores expect about 2x it at 2 threads).
  python -m benchmarks.bench_inception check --generator DIR [--data prepared] [--n 2000] [--candidates ...]
      the precision check (benchmarks/precision_check.py): FID of DIR's samples vs the real test split by
      fp32 and by each candidate, accepted when within 0.5% relative.
  python -m benchmarks.bench_inception fidinf [--data prepared] [--n 2000] [--generator DIR ...] [--metrics F ...]
      FID∞ of the train split against the test split (should be near 0, skip with --no-train-split), and of each
      generator: its FID at n (10,000 is the published convention) and FID∞; with --metrics (the generator's
      metrics/eval/metrics.json) also how far that run's CPU-count FID∞ lies from the FID at n.

Results go to benchmarks/results/inception_<command>.json; RESULTS.md "Inception on CPU" quotes them.
Features computed here are cached in the evaluate step's real-statistics cache (same keys), so they are
reused by `productgan evaluate`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_file import save_result

REPO = Path(__file__).resolve().parents[1]
OPTIONS = ["fp32", "fp32+cl", "bf16", "bf16+cl", "fp16+cl", "fp32+freeze", "fp32+freeze+cl", "bf16+freeze+cl"]

SPEED_CHILD = r"""
import json, os, sys, time, warnings
import numpy as np, torch
from productgan.metrics.inception import InceptionExtractor, resolve_weights
opt, threads, batch, batches, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
parts = opt.split("+")
ex = InceptionExtractor(resolve_weights(), "cpu", batch, precision=parts[0], channels_last="cl" in parts)
if "freeze" in parts:  # oneDNN fusion: BN folded into conv, conv+ReLU fused, weights pre-packed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex.module = torch.jit.optimize_for_inference(torch.jit.freeze(ex.module))
images = np.load(os.path.join(data, "test_images.npy"), mmap_mode="r")[: batch * (batches + 1)]
ex.features(images[:batch], progress=False)  # warm-up (oneDNN primitive creation, JIT profiling runs)
t0, c0 = time.perf_counter(), time.process_time()
ex.features(images[batch:], progress=False)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
n = batch * batches
print(json.dumps({"option": opt, "threads": threads, "batch": batch, "images": n, "images_per_s": n / wall,
                  "images_per_cpu_s": n / cpu, "load": os.getloadavg()[0]}))
"""


def save(name: str, doc: dict[str, Any]) -> Path:
    return save_result("inception", name, doc)


def cmd_speed(args: argparse.Namespace) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rows = []
    for rnd in range(args.rounds):
        for threads in args.threads:
            for batch in args.batches:
                for opt in args.options:
                    cmd = ["nice", "-n", str(args.nice), sys.executable, "-c", SPEED_CHILD, opt, str(threads),
                           str(batch), str(args.batches_per_run), str(args.data)]
                    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                    row = {"round": rnd, **json.loads(out.stdout.strip().splitlines()[-1])}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    save(args.save_as, {"rows": rows})
    print(speed_table(rows))


def speed_table(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["option"], r["threads"], r["batch"]), []).append(r)
    base = {(t, b): np.median([r["images_per_cpu_s"] for r in g]) for (o, t, b), g in groups.items() if o == "fp32"}
    lines = ["| option | threads | batch | images/s (each round) | images per CPU-s (each round) | median per CPU-s "
             "| vs fp32 |", "|---|---|---|---|---|---|---|"]
    for (opt, threads, batch), g in groups.items():
        med = float(np.median([r["images_per_cpu_s"] for r in g]))
        ref = base.get((threads, batch))
        wall = ", ".join(f"{r['images_per_s']:.2f}" for r in g)
        cpu = ", ".join(f"{r['images_per_cpu_s']:.2f}" for r in g)
        ratio = f"{med / ref:.2f}x" if ref else "—"
        lines.append(f"| {opt} | {threads} | {batch} | {wall} | {cpu} | {med:.2f} | {ratio} |")
    return "\n".join(lines)


def _reference(data: Path, split: str, n: int):
    """The evaluate step's real reference (first n of its fixed permutation of ``split``) with the cache."""
    from productgan.data.arrays import load_manifest, load_split
    from productgan.metrics import cache
    from productgan.metrics.evaluate import REFERENCE_SEED, Reference

    images, labels = load_split(data, split)
    order = np.random.default_rng(REFERENCE_SEED).permutation(len(images))
    return Reference(data, split, load_manifest(data), images, labels, order, cache.cache_root())


def _generated(folder: Path, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    from productgan.gan.export import load_generator
    from productgan.gan.sample import generate_uint8

    generator, config = load_generator(folder, "cpu")
    return generate_uint8(generator, labels, seed, config.latent_dim, None, 500)


def _extractor(precision: str, channels_last: bool = True):
    from productgan.metrics.inception import InceptionExtractor, resolve_weights

    return InceptionExtractor(resolve_weights(), "cpu", precision=precision, channels_last=channels_last)


def _cached_fake(folder: Path, extractor, images: np.ndarray) -> np.ndarray:
    """Generated-side features of the generator in ``folder``, kept beside the real-statistics cache so a rerun
    costs nothing; keyed by the generator's weights, so two generators in folders of the same name never share."""
    from productgan.io import sha256_file
    from productgan.metrics import cache

    folder = Path(folder).resolve()
    weights = sha256_file(folder / "generator.safetensors")[:12]
    tag = f"{folder.parent.name}-{folder.name}-{weights}-n{len(images)}"
    path = cache.cache_root() / "bench_inception" / f"{tag}-{extractor.identity}.npy"
    if path.is_file():
        return np.load(path)
    t0 = time.process_time()
    feats = extractor.features(images)
    print(f"{tag}: {len(images)} images in {time.process_time() - t0:.0f} CPU-s ({extractor.identity})", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    return feats


def cmd_check(args: argparse.Namespace) -> None:
    """fp32 vs each candidate on the same real and generated images (features cached per precision)."""
    from benchmarks.precision_check import compare_fids
    from productgan.metrics.frechet import frechet_distance_features

    ref = _reference(args.data, "test", args.n)
    labels = np.asarray(ref.labels[ref.order[: args.n]], np.int64)
    fake = _generated(args.generator, labels)
    fids = {}
    for precision in ["fp32", *args.candidates]:
        ex = _extractor(precision)
        real = ref.features(ex.features, ex.identity, args.n).features
        gen = _cached_fake(args.generator, ex, fake)
        fids[precision] = frechet_distance_features(real, gen)
        print(f"{precision}: FID {fids[precision]:.4f}", flush=True)
    rows = []
    for c in args.candidates:
        rel, ok = compare_fids(fids["fp32"], fids[c])
        rows.append({"candidate": c, "fid_fp32": fids["fp32"], "fid_candidate": fids[c], "relative_difference": rel,
                     "accepted": ok})
        print(json.dumps(rows[-1]), flush=True)
    save("check", {"generator": str(args.generator), "n": args.n, "rows": rows})


def _evaluate_metrics(metrics_file: Path | None, folder: Path) -> dict[str, Any] | None:
    """The evaluate metrics.json given for ``folder`` (None for none or -); stops naming the file and the fix
    when it is not one."""
    if not metrics_file or str(metrics_file) == "-":
        return None
    m = json.loads(Path(metrics_file).read_text())
    if "fid_inf" not in m:
        raise SystemExit(f"{metrics_file} has no fid_inf: pass the evaluate step's metrics/eval/metrics.json "
                         f"of the run that made {folder} (a training metrics.json has none), or - for none")
    return m


def cmd_fidinf(args: argparse.Namespace) -> None:
    """FID∞ of the train split against the test split (unless --no-train-split), then of each generator: its
    plain FID at ``n`` a side (the fit's largest count) and FID∞, and, where the generator's run left an
    evaluate metrics.json (``--metrics``), how far its CPU-count FID∞ lies from this FID at ``n``."""
    from productgan.metrics.fid_infinity import fid_infinity

    # read and checked before the minutes of Inception work, not after
    runs = [_evaluate_metrics(f, folder) for folder, f in
            zip(args.generator, args.metrics or [None] * len(args.generator), strict=True)]
    ex = _extractor(args.precision)
    test = _reference(args.data, "test", args.n)
    real = test.features(ex.features, ex.identity, args.n)
    out: dict[str, Any] = {"n": args.n, "precision": ex.precision, "generators": []}
    if not args.no_train_split:
        train = _reference(args.data, "train", args.n)
        other = train.features(ex.features, ex.identity, args.n)
        out["train_vs_test"] = fid_infinity(other.features, real.features, seed=0).to_dict()
        print("train vs test:", json.dumps(out["train_vs_test"]), flush=True)
    labels = np.asarray(test.labels[test.order[: args.n]], np.int64)
    for folder, m in zip(args.generator, runs, strict=True):
        gen = _cached_fake(folder, ex, _generated(folder, labels))
        fit = fid_infinity(real.features, gen, seed=0).to_dict()
        row = {"folder": str(folder), **fit, "fid_plain": fit["fid"][-1]}  # FID of all n a side
        if m is not None:
            row["cpu_run"] = {k: m.get(k) for k in ("fid", "fid_inf", "fid_meta")}
            row["cpu_run"]["fid_at_10000_predicted"] = m["fid_inf_fit"]["fid_at_10000"]  # written with fid_inf
            row["cpu_fid_inf_minus_fid_plain"] = m["fid_inf"] - fit["fid"][-1]
        out["generators"].append(row)
        print("generator:", json.dumps(row), flush=True)
    save(args.save_as, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--options", nargs="+", default=OPTIONS)
    s.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    s.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    s.add_argument("--batches-per-run", type=int, default=2)
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--nice", type=int, default=10)
    s.add_argument("--data", type=Path, default=REPO / "prepared")
    s.add_argument("--save-as", default="speed")
    c = sub.add_parser("check")
    c.add_argument("--generator", type=Path, required=True)
    c.add_argument("--data", type=Path, default=REPO / "prepared")
    c.add_argument("--n", type=int, default=2000)
    c.add_argument("--candidates", nargs="+", default=["bf16"])
    f = sub.add_parser("fidinf")
    f.add_argument("--data", type=Path, default=REPO / "prepared")
    f.add_argument("--n", type=int, default=2000)
    f.add_argument("--precision", default="auto")
    f.add_argument("--generator", type=Path, nargs="*", default=[])
    f.add_argument("--metrics", type=Path, nargs="*",
                   help="each generator's evaluate metrics.json (the CPU run), - for none")
    f.add_argument("--no-train-split", action="store_true")
    f.add_argument("--save-as", default="fidinf")
    args = ap.parse_args()
    {"speed": cmd_speed, "check": cmd_check, "fidinf": cmd_fidinf}[args.cmd](args)


if __name__ == "__main__":
    main()
