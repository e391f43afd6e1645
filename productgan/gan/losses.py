"""GAN losses on discriminator logits, and the R1 gradient penalty.

``bce``: the non-saturating loss of Goodfellow et al. 2014 (D: BCE real=1 / fake=0; G: -log D(G(z))).
``hinge``: the hinge loss of SNGAN / SAGAN / BigGAN (D: relu(1 - real) + relu(1 + fake); G: -fake).
Losses are means over the batch, returned as 0-d tensors (no host synchronisation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bce", "hinge")


def check_loss(kind: str) -> str:
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; use one of {LOSSES}")
    return kind


def d_real_loss(kind: str, real_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on real images (wants high logits)."""
    real_logits = real_logits.float()
    if kind == "bce":
        return F.softplus(-real_logits).mean()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean()
    raise ValueError(f"unknown loss {kind!r}; use one of {LOSSES}")


def d_fake_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on generated images (wants low logits)."""
    fake_logits = fake_logits.float()
    if kind == "bce":
        return F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1.0 + fake_logits).mean()
    raise ValueError(f"unknown loss {kind!r}; use one of {LOSSES}")


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return d_real_loss(kind, real_logits) + d_fake_loss(kind, fake_logits)


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    fake_logits = fake_logits.float()
    if kind == "bce":
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {kind!r}; use one of {LOSSES}")


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E ||d D(x) / dx||^2 on real images (Mescheder et al. 2018); ``real_images`` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().square().sum(dim=(1, 2, 3)).mean()
