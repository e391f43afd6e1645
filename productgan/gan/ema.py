"""Exponential moving average of the generator's weights (Karras et al. 2018; Yazici et al. 2019).

The averaged generator is what gets exported: it gives smoother, better samples than the raw weights.
As in StyleGAN2-ADA the average has a half-life counted in images, ``kimg`` thousand, ramped up early
in training (at most ``rampup`` x the images seen so far), so short runs are not averaged over the
generator's random beginnings. BatchNorm statistics (buffers) are averaged the same way.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_beta(kimg: float, rampup: float, images_seen: int, batch_images: int) -> float:
    """The weight kept by the average at this update (0 = copy the model)."""
    half_life = kimg * 1000.0
    if rampup > 0:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (batch_images / max(half_life, 1e-8))


class EMA:
    def __init__(self, model: nn.Module, kimg: float, rampup: float = 0.05) -> None:
        self.kimg, self.rampup = float(kimg), float(rampup)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._cache: tuple[int, tuple] | None = None

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple]]:
        if self._cache is not None and self._cache[0] == id(model):
            return self._cache[1]
        mine = dict(self.model.state_dict(keep_vars=True))
        floats_a, floats_b, others = [], [], []
        for name, value in model.state_dict(keep_vars=True).items():
            target = mine[name]
            if target.is_floating_point():
                floats_a.append(target.data)
                floats_b.append(value.data)
            else:
                others.append((target, value))
        self._cache = (id(model), (floats_a, floats_b, others))
        return floats_a, floats_b, others

    @torch.no_grad()
    def update(self, model: nn.Module, images_seen: int, batch_images: int) -> None:
        """Blend ``model`` into the average after a step that brought the total to ``images_seen``."""
        ema, cur, others = self._pairs(model)
        beta = ema_beta(self.kimg, self.rampup, images_seen, batch_images)
        torch._foreach_lerp_(ema, cur, 1.0 - beta)  # fused over all tensors, no host sync
        for target, value in others:
            target.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
        self._cache = None


@torch.no_grad()
def recalibrate_batchnorm(
    generator: nn.Module, latent_dim: int, num_classes: int, images: int = 2048, batch_size: int = 256,
    seed: int = 0,
) -> nn.Module:
    """Recompute ``generator``'s BatchNorm running statistics from its own samples ("standing statistics",
    Brock et al. 2019), in place; returns it in eval mode.

    An averaged generator's weights never produced the running statistics it carries (those come from the
    live weights, at other steps), and in eval mode the mismatch shows as washed-out or grey samples.
    Averaging over ``images`` fresh samples (balanced over the categories, seeded) gives the statistics
    that belong to these weights.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return generator.eval()
    device = next(generator.parameters()).device
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches below
    gen = torch.Generator().manual_seed(seed)
    generator.train()
    try:
        for start in range(0, images, batch_size):
            n = min(batch_size, images - start)
            z = torch.randn(n, latent_dim, generator=gen)
            labels = (torch.arange(start, start + n) % num_classes).long()
            generator(z.to(device), labels.to(device))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
    return generator.eval()
