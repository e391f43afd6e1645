"""Shared fixtures: small real data (Fashion-MNIST from Debian's package) and a tiny generator."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FMNIST_DIR = Path(os.environ.get("PRODUCTGAN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FMNIST_CATEGORIES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def read_idx(path: Path) -> np.ndarray:
    """Minimal IDX reader for test fixtures (the product code has its own)."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(autouse=True)
def _no_leaked_params_file():
    """`productgan --params F` run in-process (click's CliRunner, also from module-scoped fixtures) sets
    $PRODUCTGAN_PARAMS for the rest of the process; every test starts and ends without it, so no test or
    subprocess reads another test's params."""
    os.environ.pop("PRODUCTGAN_PARAMS", None)
    yield
    os.environ.pop("PRODUCTGAN_PARAMS", None)


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"{FMNIST_DIR}: Fashion-MNIST missing; `apt-get install dataset-fashion-mnist` (make test does)")
    return FMNIST_DIR


@pytest.fixture(scope="session")
def fmnist_small(fmnist_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first 600 train and 200 test images of the real Fashion-MNIST (N×1×28×28 uint8, labels int64)."""
    out = {}
    for split, prefix, n in (("train", "train", 600), ("test", "t10k", 200)):
        x = read_idx(fmnist_dir / f"{prefix}-images-idx3-ubyte.gz")[:n, None].copy()
        y = read_idx(fmnist_dir / f"{prefix}-labels-idx1-ubyte.gz")[:n].astype(np.int64)
        out[split] = (x, y)
    return out


def write_prepared(root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], categories: list[str]) -> Path:
    """A preprocess-shaped folder ({split}_images.npy, {split}_labels.npy, manifest.json)."""
    from productgan.io import atomic_write_json

    root.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, (x, y) in splits.items():
        np.save(root / f"{split}_images.npy", x)
        np.save(root / f"{split}_labels.npy", y)
        per_category = {c: int((y == i).sum()) for i, c in enumerate(categories)}
        counts[split] = {"total": int(len(y)), "per_category": per_category}
    c, h = next(iter(splits.values()))[0].shape[1:3]
    atomic_write_json(root / "manifest.json", {
        "categories": categories, "resolution": int(h), "channels": int(c), "counts": counts,
        "refused": [], "dataset_hash": "test-fixture", "params": {},
    })
    return root


@pytest.fixture()
def tiny_prepared(tmp_path: Path, fmnist_small) -> Path:
    """A prepared dataset: 500 train, 100 val, 200 test real Fashion-MNIST images at 28×28×1."""
    (x, y), (xt, yt) = fmnist_small["train"], fmnist_small["test"]
    splits = {"train": (x[:500], y[:500]), "val": (x[500:], y[500:]), "test": (xt, yt)}
    return write_prepared(tmp_path / "prepared", splits, FMNIST_CATEGORIES)


def build_tiny_generator(out_dir: Path, seed: int = 0, meta: dict | None = None, **config: Any) -> Path:
    """An untrained (random) class-conditional generator folder for the 10 Fashion-MNIST categories; ``config``
    overrides GeneratorConfig fields (e.g. a colour generator: channels=3, resolution=32, categories=[...])."""
    import torch

    from productgan.gan.config import GeneratorConfig
    from productgan.gan.export import save_generator
    from productgan.gan.networks import build_generator

    torch.manual_seed(seed)
    cfg = GeneratorConfig(**{"resolution": 28, "channels": 1, "latent_dim": 32, "base_channels": 16,
                             "categories": FMNIST_CATEGORIES, "meta": dict(meta or {}), **config})
    generator = build_generator(cfg)
    # PyTorch's default init instead of DCGAN's N(0, 0.02): an untrained DCGAN draws nearly flat grey
    # images, and tests of seeds, truncation and edits need images that differ visibly.
    for module in generator.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return save_generator(generator.eval(), cfg, out_dir)


@pytest.fixture()
def tiny_generator_dir(tmp_path: Path) -> Path:
    """An untrained (random) class-conditional generator folder for the 10 Fashion-MNIST categories."""
    return build_tiny_generator(tmp_path / "generator")


@pytest.fixture()
def cli_env() -> dict[str, str]:
    """Environment for running `python -m productgan` / dvc in a subprocess from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env
