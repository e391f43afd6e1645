"""Edits through the generator's latent space: principal directions (SeFa) and the latent edits of a request
(``LatentEdits``: another category, a strip to another product, a step along a direction).

SeFa (Shen & Zhou 2021, genforce/sefa) finds interpretable directions without labels or sampling: the first
layer of the generator maps z to its first features by a matrix W (every generator here has that layer,
``fc``, reading cat(z, class embedding)); the directions z moves those features most along are the
eigenvectors of WᵀW, strongest first. Moving a latent along direction ``k`` changes what the generator's first
layer amplifies most, then second most, ... (on colour products: the colour and lightness of the product, then
its shape; on Fashion-MNIST: shape and shading); a person names them from `productgan directions`' grids.
Closed form: milliseconds, the same directions on every load. It replaced GANSpace (PCA of sampled first-layer
features, regressed back to z), which took seconds and did no better (benchmarks/RESULTS.md, "Latent
directions: SeFa and GANSpace"; benchmarks/bench_directions.py keeps it for the comparison).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class Directions:
    """Unit vectors in latent space (k, latent_dim), strongest first, and the share of the first layer's output
    variance (over z ~ N(0, I)) along each: the eigenvalues of WᵀW over their sum."""

    vectors: torch.Tensor
    explained: list[float]

    def __len__(self) -> int:
        return len(self.vectors)


def first_layer_matrix(generator: nn.Module, latent_dim: int) -> torch.Tensor:
    """(outputs, latent_dim): how the generator's first op moves with each latent unit, the matrix SeFa
    factorises. Every generator here feeds cat(z, class embedding) to its first layer ``fc``, whose first op is a
    Linear: the weight's first ``latent_dim`` columns. Anything else is refused: SeFa needs a linear map from z."""
    fc = getattr(generator, "fc", None)
    first = next(iter(fc), None) if isinstance(fc, nn.Sequential) else fc
    name = type(generator).__name__
    if isinstance(first, nn.Linear) and first.in_features >= latent_dim:
        return first.weight.detach()[:, :latent_dim].double().cpu()
    found = f"{name} has no first layer `fc`" if fc is None else f"{name}.fc starts with {type(first).__name__}"
    raise ValueError(
        f"SeFa directions need the generator's first layer `fc` to start with a Linear that reads the "
        f"{latent_dim} latent units first; {found}"
    )


def sefa_directions(generator: nn.Module, latent_dim: int, count: int = 10) -> Directions:
    """The ``count`` strongest SeFa directions (Shen & Zhou 2021): the eigenvectors of WᵀW, W the generator's
    first op restricted to z (``first_layer_matrix``), largest eigenvalue first: the latent directions the
    first layer amplifies most. Closed form, no sampling: the same generator gives the same directions."""
    w = first_layer_matrix(generator, latent_dim)
    eigenvalues, vectors = torch.linalg.eigh(w.T @ w)
    order = torch.argsort(eigenvalues, descending=True)[: min(count, latent_dim)]
    v = vectors[:, order].T.contiguous()
    v *= torch.sign(v.gather(1, v.abs().argmax(1, keepdim=True)))  # a fixed sign: largest component positive
    share = eigenvalues[order].clamp(min=0) / eigenvalues.clamp(min=0).sum()
    return Directions(v.float(), [float(e) for e in share])


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
