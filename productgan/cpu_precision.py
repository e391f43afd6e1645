"""Which of fp32 and bf16 autocast runs a workload faster on this CPU: measured once per machine, then cached.

Why measure instead of reading CPU flags: with the same ``avx512_bf16`` flag, bf16 autocast trained the
``default`` recipe 1.3x faster than fp32 on an AMD EPYC and 1.4x slower on an Intel Xeon, and ran the FID's
Inception 1.6x faster on the EPYC and 0.9x as fast on the Xeon (benchmarks/RESULTS.md). Callers measure only
on CPUs with native bf16 (``productgan.device.cpu_has_native_bf16``); elsewhere fp32 is the answer.

The answer is kept per workload ``kind``, its ``key`` and the machine (CPU model, torch version, threads) in
``<cache>/<kind>/<hash>.json`` (``$PRODUCTGAN_CACHE``, default ``.cache/productgan``), so later runs on the same
machine compute in the same precision and stay reproducible; delete the file to measure again.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from productgan.device import cpuinfo
from productgan.io import atomic_write_bytes
from productgan.lineage import stable_hash
from productgan.metrics.cache import cache_root

CANDIDATES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
Measurement = tuple[str, dict[str, float]]  # (the faster precision, median seconds per pass of each)


def time_precisions(one_pass: Callable[[torch.dtype | None], object], rounds: int = 3, passes: int = 2) -> Measurement:
    """The faster of ``CANDIDATES`` for ``one_pass`` (the workload once, under that autocast dtype): one warm-up
    pass each first (oneDNN picks its kernels), then the two alternated, so a shared machine's load falls on both
    alike."""
    times: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for dtype in CANDIDATES.values():
        one_pass(dtype)
    for _ in range(rounds):
        for name, dtype in CANDIDATES.items():
            start = time.perf_counter()
            for _ in range(passes):
                one_pass(dtype)
            times[name].append((time.perf_counter() - start) / passes)
    median = {name: statistics.median(t) for name, t in times.items()}
    return min(median, key=median.__getitem__), median


def cached_precision(kind: str, key: dict[str, Any], measure: Callable[[], Measurement],
                     cache_dir: str | Path | None = None) -> tuple[str, dict[str, float], bool]:
    """``measure()``'s answer for ``key`` on this machine: read from the cache when measured before (then
    ``True``), else measured and written there."""
    key = {"cpu": cpuinfo("model name") or platform.processor(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), **key}
    path = cache_root(cache_dir) / kind / f"{stable_hash(key)}.json"
    try:
        doc = json.loads(path.read_text())
        if doc.get("key") == json.loads(json.dumps(key)) and doc.get("precision") in CANDIDATES:
            return doc["precision"], doc["seconds_per_pass"], True
    except (OSError, ValueError):
        pass  # not measured yet here, or unreadable: measure
    name, seconds = measure()
    doc = {"key": key, "precision": name, "seconds_per_pass": seconds}
    try:
        atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())
    except OSError:
        pass  # a read-only cache only costs the next run the measurement again
    return name, seconds, False
