"""Shared by the train tests: tiny prepared datasets at any size, tiny training params."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import FMNIST_CATEGORIES, write_prepared
from PIL import Image

from productgan.gan.recipes import TrainParams

TINY = {"g_channels": 4, "d_channels": 4}


def prepared_at(root: Path, images: np.ndarray, labels: np.ndarray, resolution: int, channels: int) -> Path:
    """Real Fashion-MNIST images resized to ``resolution``, tinted to RGB when ``channels`` is 3."""
    resized = np.stack([np.asarray(Image.fromarray(im[0]).resize((resolution, resolution), Image.BILINEAR))
                        for im in images])[:, None]
    if channels == 3:
        resized = np.concatenate([resized, (resized * 0.8).astype(np.uint8), (resized * 0.5).astype(np.uint8)], 1)
    return write_prepared(root, {"train": (resized, labels)}, FMNIST_CATEGORIES)


def tiny_params(tmp: Path, recipe: str = "default", **settings) -> TrainParams:
    """2 steps of batch 4 with 4-channel networks of ``recipe``; checkpoints, metrics and plots under ``tmp``."""
    tiny = dict(max_minutes=None, steps=2, batch_size=4, checkpoint_every=2, log_every=1, sample_every=2, sync_every=1,
                grid_columns=2, checkpoint_dir=str(tmp / "ckpt"), metrics_file=str(tmp / "metrics.json"),
                plots_file=str(tmp / "plots.csv"), **TINY)
    return TrainParams.of_recipe(recipe, **{**tiny, **settings})


def small_prepared(tmp_path: Path, fmnist_small) -> Path:
    """64 real Fashion-MNIST train images at 28×28×1 (few enough that `augment: auto` turns DiffAugment on)."""
    x, y = fmnist_small["train"]
    return prepared_at(tmp_path / "prepared", x[:64], y[:64], 28, 1)
