"""Build ingest-shaped ``data/`` folders (files + manifest.json per the ingest contract) for preprocess tests."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from productgan.data.idx import idx_bytes
from productgan.io import atomic_write_json, sha256_bytes

FMNIST_SOURCE = "fashion-mnist"


@dataclass
class Entry:
    path: str  # relative to data/
    content: bytes
    kind: str = "image"  # image | idx-images | idx-labels
    source: str = "shop"
    split: str | None = None
    category: str | None = None


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def fmnist_entries(images: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Entry]:
    """IDX entries for Fashion-MNIST from {"train"|"test": (N×1×28×28 uint8, labels)}."""
    entries = []
    for split, (x, y) in images.items():
        prefix = "train" if split == "train" else "t10k"
        entries += [
            Entry(f"{FMNIST_SOURCE}/{prefix}-images-idx3-ubyte.gz", idx_bytes(x[:, 0]), "idx-images",
                  FMNIST_SOURCE, split),
            Entry(f"{FMNIST_SOURCE}/{prefix}-labels-idx1-ubyte.gz", idx_bytes(y.astype(np.uint8)), "idx-labels",
                  FMNIST_SOURCE, split),
        ]
    return entries


def write_dataset(
    root: Path, entries: list[Entry], categories: list[str], source_categories: dict[str, list[str]] | None = None
) -> Path:
    """Write ``entries`` under ``root`` and ``root/manifest.json`` exactly as ingest would."""
    root.mkdir(parents=True, exist_ok=True)
    source_categories = source_categories or {}
    files = []
    for e in entries:
        path = root / e.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(e.content)
        files.append({
            "path": e.path, "source": e.source, "kind": e.kind, "split": e.split, "category": e.category,
            "size": len(e.content), "sha256": sha256_bytes(e.content),
        })
    sources = sorted({e.source for e in entries})
    atomic_write_json(root / "manifest.json", {
        "format": "productgan-dataset/1",
        "categories": categories,
        "sources": [
            {"name": s, "kind": "fashion-mnist" if s == FMNIST_SOURCE else "folder", "uri": f"/src/{s}",
             "categories": source_categories.get(s, categories)}
            for s in sources
        ],
        "files": sorted(files, key=lambda f: f["path"]),
        "refused": [],
        "skipped": [],
    })
    return root


def product_photo(rng: np.random.Generator, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A synthetic product shot: a random coloured blob on a light background, ``size`` = (w, h)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.2, 0.4) * min(w, h)
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
    rgb = np.full((h, w, 3), 240, dtype=np.uint8)
    rgb[inside] = rng.integers(0, 200, size=3, dtype=np.uint8)
    img = Image.fromarray(rgb, "RGB")
    return img if mode == "RGB" else img.convert(mode)
