"""Seeded sampling: the same (seed, n, truncation) always gives the same latents and images."""

from __future__ import annotations

import os
import sys

import numpy as np
import torch


def latents(seed: int, n: int, dim: int, truncation: float | None = None) -> torch.Tensor:
    """``n`` latent vectors drawn on the CPU from ``seed`` (device independent).

    ``truncation`` t in (0, 1]: components with |z| > t*2 are redrawn (the truncation trick), trading
    variety for fidelity; None or >= 1 means no truncation.
    """
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, dim, generator=gen)
    if truncation is not None and truncation < 1.0:
        limit = 2.0 * float(truncation)
        for _ in range(100):
            bad = z.abs() > limit
            if not bad.any():
                break
            z[bad] = torch.randn(int(bad.sum()), generator=gen)
        z = z.clamp(-limit, limit)
    return z


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] (N, C, H, W) -> uint8 numpy (N, C, H, W)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


@torch.inference_mode()
def generate_uint8(
    generator: torch.nn.Module,
    labels: torch.Tensor | np.ndarray | list[int],
    seed: int,
    latent_dim: int,
    truncation: float | None = None,
    batch_size: int = 512,
    progress: str | None = None,
) -> np.ndarray:
    """Images for ``labels`` (one per label) as uint8 (N, C, H, W), seeded: the one sampling loop (train's
    grids, evaluate, generate). ``progress``: a progress-bar title, shown on a terminal only."""
    from tqdm import tqdm

    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    z = latents(seed, len(labels_t), latent_dim, truncation)
    device = next(generator.parameters()).device
    out = []
    starts = range(0, len(labels_t), batch_size)
    for i in tqdm(starts, desc=progress, disable=progress is None or not sys.stderr.isatty(), leave=False):
        out.append(to_uint8(generator(z[i : i + batch_size].to(device), labels_t[i : i + batch_size].to(device))))
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


@torch.inference_mode()
def category_grid(
    generator: torch.nn.Module, num_classes: int, columns: int, seed: int, latent_dim: int,
    truncation: float | None = None, pad: int = 2,
) -> np.ndarray:
    """One row per category, ``columns`` samples each; column j uses the same latent in every row, so the
    grid shows what the class changes. uint8 (H, W, C), ``pad`` black pixels between images; cut-outs on grey."""
    from productgan.render import flatten_alpha, tile

    z = latents(seed, columns, latent_dim, truncation).repeat(num_classes, 1)
    labels = torch.arange(num_classes).repeat_interleave(columns)
    device = next(generator.parameters()).device
    images = to_uint8(generator(z.to(device), labels.to(device)))
    return tile(flatten_alpha(images), cols=columns, pad=pad)


def save_png(image_hwc: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write an (H, W, C) uint8 picture as PNG, atomically."""
    from PIL import Image

    from productgan.io import atomic_open

    image = image_hwc[:, :, 0] if image_hwc.shape[2] == 1 else image_hwc
    with atomic_open(path, "wb") as fh:
        Image.fromarray(image).save(fh, format="PNG")
