"""params.yaml section ``studio``: how the studio stays responsive when many people use it at once and when
the registry is slow (every default and check here; params.yaml states what differs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from productgan.params import load_section, require


@dataclass
class StudioParams:
    concurrency: int = 2  # requests that make images at once (more only contend for the same CPU cores)
    queue: int = 64  # requests that may wait for one of those; more are answered 503 + Retry-After at once
    wait_s: float = 10.0  # a request that waited this long is answered 503 + Retry-After
    refresh_s: float = 30.0  # the registry's aliases are re-read in the background at most this often
    # each registry call during a refresh (MLflow's own: 7 retries, 120 s each); $MLFLOW_HTTP_REQUEST_* win
    registry_retries: int = 2
    registry_timeout_s: int = 10  # whole seconds: MLflow reads the variable as an int

    def __post_init__(self) -> None:
        for key in ("concurrency", "registry_timeout_s"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        for key in ("queue", "registry_retries"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        for key in ("wait_s", "refresh_s"):
            require(getattr(self, key) > 0, key, f"must be > 0, got {getattr(self, key)}")


def load_studio_params(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
                       ) -> StudioParams:
    return load_section("studio", StudioParams, path, overrides)
