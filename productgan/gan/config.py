"""The generator's config: everything needed to rebuild it from its weights (stored as generator.json)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from productgan.frame import SQUARE, frame_size


@dataclass
class GeneratorConfig:
    arch: str = "dcgan"
    resolution: int = 28  # the longer side
    aspect: str = SQUARE  # W:H (productgan.frame): 3:4 at 64 makes 48x64 images
    channels: int = 1
    latent_dim: int = 128
    base_channels: int = 64
    categories: list[str] = field(default_factory=list)
    # free-form lineage written by the trainer (recipe, dataset version, run id, step ...)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> tuple[int, int]:
        """(height, width) of the images."""
        return frame_size(self.resolution, self.aspect)

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


def start_map(resolution: int, aspect: str = SQUARE) -> tuple[int, int, int]:
    """(height, width) of the first feature map and the number of 2x up- (G) or downsamplings (D) for a frame:
    the square start map carried to ``aspect`` (4x4 -> 3x4 at 3:4); refused where that is not whole pixels."""
    s0, n = start_size(resolution)
    try:
        h0, w0 = frame_size(s0, aspect)
    except ValueError:
        raise ValueError(f"aspect {aspect} cannot be made at {resolution} px (the networks start from a {s0}x{s0} "
                         f"map); use 32, 64 or 128 px for 3:4 and 4:3, or aspect 1:1") from None
    return h0, w0, n
