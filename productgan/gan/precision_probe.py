"""``train.precision: auto`` on a CPU with native bf16: time the networks in fp32 and in bf16 autocast, keep the faster.

The probe runs a few forward + backward passes of copies of G and D on random inputs (the run's own networks,
optimisers and random streams are untouched, so a run stays a function of its seed). It costs a few seconds of a
10-minute budget, once per machine, networks and batch: the answer is cached (productgan/cpu_precision.py says
why it is measured and where it is kept).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from productgan.cpu_precision import Measurement, cached_precision, time_precisions
from productgan.device import autocast


def probe_cpu_precision(G: nn.Module, D: nn.Module, latent_dim: int, num_categories: int, batch: int,
                        rounds: int = 3, passes: int = 2) -> Measurement:
    """The faster of fp32 and bf16 autocast for one G + D forward and backward (the shape of a training step)
    at this batch on this CPU, and the median seconds per pass of each."""
    G, D = copy.deepcopy(G).train(), copy.deepcopy(D).train()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(batch, latent_dim, generator=gen)
    labels = torch.randint(0, num_categories, (batch,), generator=gen)

    def one_pass(dtype: torch.dtype | None) -> None:
        with autocast(z.device, dtype):
            logits = D(G(z, labels), labels)
        logits.float().mean().backward()

    return time_precisions(one_pass, rounds, passes)


def cpu_precision(G: nn.Module, D: nn.Module, latent_dim: int, num_categories: int, batch: int,
                  networks: dict, cache_dir: str | Path | None = None) -> tuple[str, dict[str, float], bool]:
    """``probe_cpu_precision``'s answer for this machine, networks (``networks``: their settings) and batch:
    read from the cache when measured before (then ``True``), else measured and written there."""
    return cached_precision("train_precision", {"batch": batch, "networks": networks},
                            lambda: probe_cpu_precision(G, D, latent_dim, num_categories, batch), cache_dir)
