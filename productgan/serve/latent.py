"""Edits through the generator's latent space: principal directions (GANSpace) and the latent edits of a
request (``LatentEdits``: another category, a strip to another product, a step along a direction).

GANSpace (Härkönen et al. 2020) finds interpretable directions without labels: sample many latents, take the
generator's early features (here the output of its first layer ``fc``, which every generator here has: the
layer that reads z and the class), and find their principal components; each component is carried back into
latent space by linear regression of the latents on the component scores. Moving a latent along direction
``k`` changes what the generator's first layer varies most, then second most, ... For the MLP and DCGAN
generators these are global changes of shape and shading (width, length, sleeve, brightness); a person names
them from `productgan directions`' grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class Directions:
    """Unit vectors in latent space (k, latent_dim), strongest first, and the share of the early features'
    variance each principal component explains."""

    vectors: torch.Tensor
    explained: list[float]
    samples: int
    seed: int

    def __len__(self) -> int:
        return len(self.vectors)


@torch.no_grad()
def early_features(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The output of the generator's first layer ``fc`` for (z, labels), flattened: (N, features). Asked of
    the generator (``first_map``), not read by a hook, so other threads using the generator are not touched."""
    first_map = getattr(generator, "first_map", None)
    if not callable(first_map):
        raise ValueError(f"{type(generator).__name__} has no first layer `first_map` to read early features from")
    return first_map(z, labels).float().flatten(1)


@torch.no_grad()
def principal_directions(
    generator: nn.Module, latent_dim: int, num_classes: int, count: int = 10, samples: int = 2000, seed: int = 0,
) -> Directions:
    """The ``count`` strongest GANSpace directions of ``generator`` from ``samples`` seeded latents (labels
    balanced over the categories). Deterministic for the same generator, count, samples and seed."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, latent_dim, generator=gen)
    labels = torch.arange(samples) % max(num_classes, 1)
    device = next(generator.parameters()).device
    feats = torch.cat([early_features(generator, z[i : i + 500].to(device), labels[i : i + 500].to(device)).cpu()
                       for i in range(0, samples, 500)]).double()
    feats -= feats.mean(0)
    count = min(count, latent_dim, samples - 1)
    # principal component scores from the samples' Gram matrix (samples x samples, far smaller than the
    # features' covariance; LAPACK's eigh stays fast on a loaded CPU where its SVD crawls): the eigenvectors
    # of F F^T are the samples' scores on the components, up to scale
    variance, vectors = torch.linalg.eigh(feats @ feats.T)
    order = torch.argsort(variance, descending=True)[:count]
    scores = vectors[:, order]
    scores = (scores - scores.mean(0)) / scores.std(0)
    # latent directions: least squares z ~ scores @ V (GANSpace's regression back to latent space)
    v = torch.linalg.lstsq(scores, z.double()).solution  # (count, latent_dim)
    v /= v.norm(dim=1, keepdim=True)
    v *= torch.sign(v.gather(1, v.abs().argmax(1, keepdim=True)))  # a fixed sign: largest component positive
    explained = (variance[order].clamp(min=0) / variance.clamp(min=0).sum()).tolist()
    return Directions(v.float(), [float(e) for e in explained], samples, seed)


def along(z: torch.Tensor, directions: Directions, index: int, strength: float) -> torch.Tensor:
    """``z`` (N, latent_dim) moved ``strength`` latent units along direction ``index``."""
    if not 0 <= index < len(directions):
        raise IndexError(f"direction={index} is out of range; this generator offers 0..{len(directions) - 1}")
    return z + float(strength) * directions.vectors[index].to(z.device, z.dtype)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: stays on the shell where Gaussian latents live (lerp would pass
    through low-norm, atypical latents halfway)."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1.0, 1.0))
    if float(omega) < 1e-6:
        return (1 - t) * a + t * b
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def strengths(limit: float, columns: int) -> list[float]:
    """``columns`` strengths evenly from -limit to +limit (0 in the middle when ``columns`` is odd)."""
    return [float(v) for v in np.linspace(-limit, limit, columns)]
