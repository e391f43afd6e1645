"""The preprocess output read back: per split ``{split}_images.npy`` (uint8 N×C×H×W) and
``{split}_labels.npy`` (int64 N), plus ``manifest.json``. Arrays open memory-mapped by default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from productgan.io import read_json

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


def images_path(root: str | os.PathLike[str], split: str) -> Path:
    return Path(root) / f"{split}_images.npy"


def labels_path(root: str | os.PathLike[str], split: str) -> Path:
    return Path(root) / f"{split}_labels.npy"


def load_split(root: str | os.PathLike[str], split: str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N×C×H×W, labels int64 N) of one split of a preprocessed dataset."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    ip, lp = images_path(root, split), labels_path(root, split)
    if not ip.is_file() or not lp.is_file():
        raise FileNotFoundError(
            f"{ip}: missing; run `productgan preprocess --input data --out {root}` (or `dvc repro preprocess`)"
        )
    mode = "r" if mmap else None
    return np.load(ip, mmap_mode=mode, allow_pickle=False), np.load(lp, mmap_mode=mode, allow_pickle=False)


def load_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; this folder was not written by `productgan preprocess`")
    return read_json(path)


def category_names(root: str | os.PathLike[str]) -> list[str]:
    return list(load_manifest(root)["categories"])
