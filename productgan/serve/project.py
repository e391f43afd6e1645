"""Projection: the latent whose product the generator draws closest to a photo, so the photo can be edited
through the generator (``latent.py``'s edits) instead of only pixel by pixel.

The distance is perceptual plus pixel: the squared difference of the evaluate step's domain-classifier
features (productgan/metrics/domain_classifier.py: a small CNN trained on the same dataset, 128 standardised
features; it sees category and shape, not JPEG noise) weighted by ``perceptual_weight``, plus the mean squared
pixel difference in [-1, 1] weighted by ``pixel_weight``, plus ``latent_weight`` x (|z|^2 / d - 1)^2, which keeps
the latent on the shell where the generator's Gaussian latents live (far off it the generator was never
trained). ``candidates`` starting latents are optimised together with Adam and the closest wins.

Warm start (the article's AE-GAN idea): an encoder, a small CNN trained once per generator on the
generator's own samples to map an image back to its latent (cached by the generator's weights), gives the
first candidate. It turns projection into a few refinement steps from a good guess instead of a search.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # images in [-1, 1] (N, C, H, W) -> features (N, d)


@dataclass
class ProjectParams:
    """params.yaml section ``project``: every default and check (params.yaml states what differs)."""

    steps: int = 300  # Adam steps on the latent
    lr: float = 0.05
    candidates: int = 8  # starting latents optimised together; the closest wins
    perceptual_weight: float = 1.0  # domain-classifier feature distance
    pixel_weight: float = 1.0  # mean squared pixel difference, pixels in [-1, 1]
    latent_weight: float = 0.01  # keeps |z|^2 / d near 1 (the generator's training distribution)
    encoder: bool = True  # warm start from an encoder trained on generator samples (AE-GAN idea)
    encoder_steps: int = 1500
    encoder_batch_size: int = 64
    encoder_lr: float = 0.002
    seed: int = 0
    data: str = "prepared"  # the generator's prepared dataset: its domain classifier is the perceptual distance

    def __post_init__(self) -> None:
        from productgan.params import require

        for key in ("steps", "perceptual_weight", "pixel_weight", "latent_weight"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        for key in ("lr", "candidates", "encoder_steps", "encoder_batch_size", "encoder_lr"):
            require(getattr(self, key) > 0, key, f"must be positive, got {getattr(self, key)}")
        require(self.perceptual_weight + self.pixel_weight > 0, "pixel_weight",
                "perceptual_weight + pixel_weight must be > 0 (something must measure the distance)")


@dataclass
class Projection:
    """A photo's projection: its latent and label, the reconstruction (uint8 C×H×W) and how close it is."""

    latent: np.ndarray  # float32 (latent_dim,)
    label: int
    reconstruction: np.ndarray
    feature_distance: float | None  # mean squared difference of domain-classifier features (None: no classifier)
    pixel_mse: float  # mean squared pixel difference, pixels in [-1, 1]
    seconds: float
    steps: int
    warm_start: bool
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "feature_distance": self.feature_distance, "pixel_mse": self.pixel_mse,
                "pixel_rmse_0_255": float(np.sqrt(self.pixel_mse) * 127.5), "seconds": round(self.seconds, 3),
                "steps": self.steps, "warm_start": self.warm_start, **self.info}


# ------------------------------------------------------------------------------------------- encoder


class Encoder(nn.Module):
    """image, label -> latent: strided convolutions, then a dense head with a class projection."""

    def __init__(self, channels: int, resolution: int, latent_dim: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(4 * width * 16, 512), nn.LeakyReLU(0.2),
        )
        self.embed = nn.Embedding(max(num_classes, 1), 512)
        self.head = nn.Linear(512, latent_dim)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(h + self.embed(labels))


def _generator_key(generator: nn.Module, params: ProjectParams) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(generator.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    settings = (params.encoder_steps, params.encoder_batch_size, params.encoder_lr, params.seed)
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:20]


def train_encoder(
    generator: nn.Module, latent_dim: int, num_classes: int, params: ProjectParams,
    cache_dir: str | os.PathLike[str] | None = None, progress: bool = False,
) -> Encoder:
    """An encoder trained on ``generator``'s seeded samples to give back their latents (MSE), from the cache
    (``<cache>/encoders/<hash of the generator's weights and the settings>.safetensors``) when there."""
    from safetensors.torch import load, save
    from tqdm import tqdm

    from productgan.io import atomic_write_bytes

    device = next(generator.parameters()).device
    with torch.no_grad():
        probe = generator(torch.zeros(1, latent_dim, device=device), torch.zeros(1, dtype=torch.long, device=device))
    channels, resolution = int(probe.shape[1]), int(probe.shape[-1])
    torch.manual_seed(params.seed)
    encoder = Encoder(channels, resolution, latent_dim, num_classes)
    path = Path(cache_dir) / "encoders" / f"{_generator_key(generator, params)}.safetensors" if cache_dir else None
    if path is not None and path.is_file():
        encoder.load_state_dict(load(path.read_bytes()))
        return encoder.to(device).eval()
    encoder.to(device).train()
    opt = torch.optim.Adam(encoder.parameters(), lr=params.encoder_lr)
    gen = torch.Generator().manual_seed(params.seed)
    for _ in tqdm(range(params.encoder_steps), desc="project: encoder", disable=not progress, leave=False):
        z = torch.randn(params.encoder_batch_size, latent_dim, generator=gen)
        labels = torch.randint(0, max(num_classes, 1), (params.encoder_batch_size,), generator=gen)
        with torch.no_grad():
            images = generator(z.to(device), labels.to(device))
        loss = (encoder(images, labels.to(device)) - z.to(device)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    encoder.eval()
    if path is not None:
        atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}))
    return encoder


# ---------------------------------------------------------------------------------------- projection


def domain_feature_fn(data_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                      device: str | torch.device = "cpu") -> tuple[FeatureFn, Any]:
    """The evaluate step's domain classifier for ``data_dir`` (trained once and cached, with the settings of
    params ``evaluate``) as a differentiable feature function; also returns the classifier itself."""
    from productgan.metrics.cache import cache_root
    from productgan.metrics.domain_classifier import load_or_train
    from productgan.metrics.evaluate import evaluation_params

    params = evaluation_params()
    clf = load_or_train(data_dir, cache_root(cache_dir or params.cache_dir), params.classifier(), params.real_split,
                        device)
    clf.net.requires_grad_(False)
    return (lambda x: clf.net(x)[0]), clf


def to_unit(image_uint8: np.ndarray) -> torch.Tensor:
    """uint8 (C, H, W) or (N, C, H, W) -> float in [-1, 1] with a batch axis."""
    x = torch.tensor(np.asarray(image_uint8)).float().div(127.5).sub(1.0)
    return x[None] if x.ndim == 3 else x


def project(
    generator: nn.Module, target: np.ndarray, label: int, latent_dim: int, params: ProjectParams | None = None,
    features: FeatureFn | None = None, encoder: Encoder | None = None,
) -> Projection:
    """Find the latent whose image (for category ``label``) is closest to ``target`` (uint8 C×H×W at the
    generator's size). ``features``: the perceptual feature function (None: pixels only); ``encoder``: a warm
    start for the first candidate."""
    from productgan.gan.sample import latents, to_uint8

    params = params or ProjectParams()
    if generator.training:  # BatchNorm would use (and move) the candidates' batch statistics
        raise ValueError("project needs the generator in eval mode: call generator.eval() first")
    t0 = time.perf_counter()
    device = next(generator.parameters()).device
    k = params.candidates
    x = to_unit(target).to(device)
    labels = torch.full((k,), int(label), dtype=torch.long, device=device)
    z0 = latents(params.seed, k, latent_dim).to(device)
    if encoder is not None:
        with torch.no_grad():
            z0[0] = encoder(x, labels[:1])[0]
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=params.lr)
    use_features = features is not None and params.perceptual_weight > 0
    target_features = features(x).detach() if use_features else None

    def distances(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        pixel = (images - x).square().flatten(1).mean(1)
        feat = (features(images) - target_features).square().mean(1) if use_features else None
        total = params.pixel_weight * pixel + (params.perceptual_weight * feat if feat is not None else 0.0)
        return total, pixel, feat

    # the generator is shared (a served model answers many callers at once): gradients are taken for z alone,
    # never accumulated in its weights, and nothing on it is switched per call
    for _ in range(params.steps):
        total, _pixel, _feat = distances(generator(z, labels))
        prior = (z.square().mean(1) - 1.0).square()
        loss = (total + params.latent_weight * prior).sum()
        (z.grad,) = torch.autograd.grad(loss, [z])
        opt.step()
    with torch.no_grad():
        images = generator(z, labels)
        total, pixel, feat = distances(images)
        best = int(total.argmin())
    return Projection(
        latent=z[best].detach().cpu().float().numpy(), label=int(label),
        reconstruction=to_uint8(images[best : best + 1])[0],
        feature_distance=float(feat[best]) if feat is not None else None, pixel_mse=float(pixel[best]),
        seconds=time.perf_counter() - t0, steps=params.steps, warm_start=encoder is not None,
        info={"candidate": best, "candidates": k},
    )
