"""The ``register`` section of params.yaml as a dataclass: every default (params.yaml states what differs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from productgan.params import load_section


@dataclass
class RegisterConfig:
    model_name: str = "product-gan"
    # The promotion rule: the challenger replaces the champion only when, re-scored in this step on the same data
    # by the same scorer, its `primary_metric` is better by more than `margin` x |champion's value| (relative
    # margin) and its class accuracy is not under the floor. A FAILED or diverged training run is never registered.
    primary_metric: str = "fd_domain"  # a key of the evaluation metrics
    greater_is_better: bool = False  # fd_domain: lower is better
    margin: float = 0.02  # relative: 0.02 = the challenger must be more than 2% better
    class_accuracy_metric: str = "class_accuracy"
    class_accuracy_floor: float = 0.3  # share of generated images classified as the asked category (chance: 0.1)
    # The promotion lock: a holder that has not released after `lock_lease_s` is presumed dead;
    # a waiter gives up after `lock_timeout_s`.
    lock_lease_s: float = 120.0
    lock_timeout_s: float = 900.0


def load_register_config(
    path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> RegisterConfig:
    return load_section("register", RegisterConfig, path, overrides)
