"""``train.precision: auto`` on a CPU with native bf16: time the networks in fp32 and in bf16 autocast, keep the faster.

Why measure instead of reading CPU flags: with the same ``avx512_bf16`` flag, bf16 autocast trained the
``default`` recipe 1.3x faster than fp32 on the AMD EPYC where the old ``bf16`` default was chosen, and 1.4x
slower on an Intel Xeon (benchmarks/RESULTS.md, "make run with FID in every run"). The probe runs a few
forward + backward passes of copies of G and D on random inputs (the run's own networks, optimisers and random
streams are untouched, so a run stays a function of its seed), the two precisions alternated so a shared
machine's load falls on both alike. It costs a few seconds of a 10-minute budget.

The answer is kept per machine (CPU model, torch version, threads), networks and batch in
``<cache>/train_precision/<key>.json`` (``$PRODUCTGAN_CACHE``, default ``.cache/productgan``), so later runs with
the same seed on the same machine train in the same precision and stay reproducible; delete it to measure again.
"""

from __future__ import annotations

import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from productgan.device import autocast, cpuinfo
from productgan.io import atomic_write_bytes
from productgan.lineage import stable_hash
from productgan.metrics.cache import cache_root

CANDIDATES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def _pass_seconds(G: nn.Module, D: nn.Module, z: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype | None,
                  passes: int) -> float:
    """Seconds per G + D forward and backward (the shape of one training step) under ``dtype`` autocast."""
    start = time.perf_counter()
    for _ in range(passes):
        with autocast(z.device, dtype):
            fake = G(z, labels)
            logits = D(fake, labels)
        logits.float().mean().backward()
    return (time.perf_counter() - start) / passes


def probe_cpu_precision(G: nn.Module, D: nn.Module, latent_dim: int, num_categories: int, batch: int,
                        rounds: int = 3, passes: int = 2) -> tuple[str, dict[str, float]]:
    """The faster of fp32 and bf16 autocast for these networks at this batch on this CPU, and the median
    seconds per pass of each (one warm-up pass each first, for oneDNN's kernel selection)."""
    G, D = copy.deepcopy(G).train(), copy.deepcopy(D).train()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(batch, latent_dim, generator=gen)
    labels = torch.randint(0, num_categories, (batch,), generator=gen)
    times: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for dtype in CANDIDATES.values():
        _pass_seconds(G, D, z, labels, dtype, 1)
    for _ in range(rounds):
        for name, dtype in CANDIDATES.items():
            times[name].append(_pass_seconds(G, D, z, labels, dtype, passes))
    median = {name: statistics.median(t) for name, t in times.items()}
    return min(median, key=median.__getitem__), median


def cpu_precision(G: nn.Module, D: nn.Module, latent_dim: int, num_categories: int, batch: int,
                  networks: dict, cache_dir: str | Path | None = None) -> tuple[str, dict[str, float], bool]:
    """``probe_cpu_precision``'s answer for this machine, networks (``networks``: their settings) and batch:
    read from the cache when measured before (then ``True``), else measured and written there."""
    key = {"cpu": cpuinfo("model name") or platform.processor(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "batch": batch, "networks": networks}
    path = cache_root(cache_dir) / "train_precision" / f"{stable_hash(key)}.json"
    try:
        doc = json.loads(path.read_text())
        if doc.get("key") == json.loads(json.dumps(key)) and doc.get("precision") in CANDIDATES:
            return doc["precision"], doc["seconds_per_pass"], True
    except (OSError, ValueError):
        pass  # not measured yet here, or unreadable: measure
    name, seconds = probe_cpu_precision(G, D, latent_dim, num_categories, batch)
    doc = {"key": key, "precision": name, "seconds_per_pass": seconds}
    try:
        atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())
    except OSError:
        pass  # a read-only cache only costs the next run the probe again
    return name, seconds, False
