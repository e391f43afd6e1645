"""The generator's config: everything needed to rebuild it from its weights (stored as generator.json)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GeneratorConfig:
    arch: str = "dcgan"
    resolution: int = 28
    channels: int = 1
    latent_dim: int = 128
    base_channels: int = 64
    categories: list[str] = field(default_factory=list)
    # free-form lineage written by the trainer (recipe, dataset version, run id, step ...)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def start_size(resolution: int) -> tuple[int, int]:
    """(first feature-map size, number of 2x upsamplings) for a supported resolution."""
    table = {28: (7, 2), 32: (4, 3), 64: (4, 4), 128: (4, 5), 256: (4, 6)}
    if resolution not in table:
        raise ValueError(f"resolution {resolution} is not supported; use one of {sorted(table)}")
    return table[resolution]
