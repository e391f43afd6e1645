"""Exponential moving average of the generator's weights (Karras et al. 2018; Yazici et al. 2019).

The averaged generator is what gets exported: it gives smoother, better samples than the raw weights.
BatchNorm running statistics (buffers) are averaged the same way so they match the averaged weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float, start_step: int = 0) -> None:
        self.decay = float(decay)
        self.start_step = int(start_step)
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
    def update(self, model: nn.Module, step: int) -> None:
        """Blend ``model`` into the average; before ``start_step`` the average just copies it."""
        ema, cur, others = self._pairs(model)
        weight = 1.0 if step < self.start_step else 1.0 - self.decay
        torch._foreach_lerp_(ema, cur, weight)  # fused: one kernel per tensor list, no host sync
        for target, value in others:
            target.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
        self._cache = None
