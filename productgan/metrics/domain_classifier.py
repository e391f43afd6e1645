"""The domain classifier: a small CNN trained on the dataset's own train split, whose penultimate layer is
the feature space of ``fd_domain``, KID, precision/recall and the diversity signal, and whose predictions
give ``class_accuracy`` of generated images.

Why: Inception (ImageNet photos, 299 px) barely sees 28 px product silhouettes and costs ~11 GFLOP an
image; this network knows the product categories and costs ~7 MFLOP (28 px). Training is seeded and runs on the CPU
(deterministic), and the weights are cached by (dataset hash, train-split content, this file's source,
resolution, channels, hyper-parameters), so every evaluation of a dataset uses the same extractor.
Numbers from it are NOT FID and must never be compared with published FIDs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load, save
from torch import nn
from tqdm import tqdm

from productgan.data.arrays import images_path, labels_path, load_manifest, load_split
from productgan.io import atomic_write_bytes, atomic_write_json, read_json, sha256_file
from productgan.lineage import code_version

log = logging.getLogger(__name__)

FEATURE_DIM = 128


def classifier_code_version() -> str:
    """Hash of this module's code (not its comments): a change to the network or its training retrains it."""
    return code_version([__file__])


class DomainNet(nn.Module):
    """conv 3×3 -> two stride-2 convs -> 4×4 pool -> 128-d features -> ReLU -> category logits.

    The features are the penultimate layer standardised by a BatchNorm without affine terms (zero mean,
    unit variance per dimension on the train split), so KID's polynomial kernel (xᵀy/d + 1)³ sees the
    O(1) inner products it was designed for instead of cubes of arbitrary activation scales.
    """

    def __init__(self, channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(4 * width * 16, FEATURE_DIM, bias=False),
            nn.BatchNorm1d(FEATURE_DIM, affine=False),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(FEATURE_DIM, num_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.body(x)
        return feats, self.head(feats)


def _to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 N×C×H×W -> float in [-1, 1] (the generator's output range)."""
    return torch.tensor(np.asarray(images)).float().div_(127.5).sub_(1.0)


@dataclass
class ClassifierSettings:
    steps: int = 800
    batch_size: int = 128
    lr: float = 0.002
    seed: int = 0
    width: int = 16


def train_domain_net(
    images: np.ndarray, labels: np.ndarray, num_classes: int, settings: ClassifierSettings, progress: bool = True
) -> DomainNet:
    """Train on the CPU with a seeded sampler and a fixed step count: the same inputs give the same weights."""
    torch.manual_seed(settings.seed)
    net = DomainNet(images.shape[1], num_classes, settings.width)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.steps)
    rng = np.random.default_rng(settings.seed)
    order, pos = rng.permutation(len(images)), 0
    net.train()
    for _ in tqdm(range(settings.steps), desc="evaluate: domain classifier", disable=not progress, leave=False):
        if pos + settings.batch_size > len(order):
            order, pos = rng.permutation(len(images)), 0
        idx = np.sort(order[pos : pos + settings.batch_size])  # sorted: faster reads from a memory map
        pos += settings.batch_size
        x = _to_input(images[idx])
        y = torch.as_tensor(np.asarray(labels[idx]), dtype=torch.long)
        _, logits = net(x)
        loss = nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


class DomainClassifier:
    """Feature extractor protocol: ``identity`` names it in cache keys; ``features(uint8 batch)``."""

    def __init__(self, net: DomainNet, key: str, info: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.key = key
        self.info = info
        self.identity = f"domain-classifier-{key}"
        self.images_seen = 0  # evidence for tests and logs that cached real statistics were used

    @torch.inference_mode()
    def embed(self, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """(features float32 (N, 128), predicted category int64 (N,)) of uint8 N×C×H×W images."""
        feats, preds = [], []
        for start in range(0, len(images), batch_size):
            f, logits = self.net(_to_input(images[start : start + batch_size]).to(self.device))
            feats.append(f.float().cpu().numpy())
            preds.append(logits.argmax(1).cpu().numpy())
        self.images_seen += len(images)
        if not feats:
            return np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0,), np.int64)
        return np.concatenate(feats), np.concatenate(preds).astype(np.int64)

    def features(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        return self.embed(images, batch_size)[0]


def _accuracy(clf: DomainClassifier, images: np.ndarray, labels: np.ndarray) -> float:
    _, preds = clf.embed(images)
    clf.images_seen -= len(images)  # bookkeeping of the classifier itself, not of an evaluation
    return float((preds == np.asarray(labels)).mean()) if len(labels) else float("nan")


def load_or_train(
    data_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    settings: ClassifierSettings,
    eval_split: str = "test",
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> DomainClassifier:
    """The classifier for this dataset from the cache, else trained on the train split and cached."""
    progress = sys.stderr.isatty() if progress is None else progress
    manifest = load_manifest(data_dir)
    categories = list(manifest["categories"])
    key_parts = {
        "dataset_hash": manifest.get("dataset_hash"),
        "train_images_sha256": sha256_file(images_path(data_dir, "train")),
        "train_labels_sha256": sha256_file(labels_path(data_dir, "train")),
        "code_version": classifier_code_version(),
        "resolution": manifest.get("resolution"),
        "channels": manifest.get("channels"),
        "categories": categories,
        "settings": settings.__dict__,
    }
    key = hashlib.sha256(repr(sorted(key_parts.items())).encode()).hexdigest()[:20]
    folder = Path(cache_dir) / "domain_classifier"
    weights, meta = folder / f"{key}.safetensors", folder / f"{key}.json"
    channels = int(manifest.get("channels") or load_split(data_dir, "train")[0].shape[1])
    if weights.is_file() and meta.is_file():
        net = DomainNet(channels, len(categories), settings.width)
        net.load_state_dict(load(weights.read_bytes()))
        info = read_json(meta)
        info["cached"] = True
        log.info("evaluate: domain classifier %s from the cache (%s)", key, weights)
        return DomainClassifier(net, key, info, device)

    x, y = load_split(data_dir, "train")
    log.info("evaluate: training the domain classifier on %d train images (%d steps)", len(x), settings.steps)
    net = train_domain_net(x, y, len(categories), settings, progress)
    clf = DomainClassifier(net, key, {}, device)
    xt, yt = load_split(data_dir, eval_split)
    clf.info = {
        "key": key,
        "key_parts": key_parts,
        "feature_dim": FEATURE_DIM,
        "train_images": int(len(x)),
        "eval_split": eval_split,
        "test_accuracy": _accuracy(clf, xt, yt),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(weights, save(state))
    atomic_write_json(meta, clf.info)
    clf.info = {**clf.info, "cached": False}
    return clf
