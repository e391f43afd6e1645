"""The ``register`` section of params.yaml as a dataclass (defaults equal the shipped params.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from productgan.params import load_section


@dataclass
class RegisterConfig:
    model_name: str = "product-gan"
    # The promotion rule: the challenger replaces the champion only when `primary_metric` is better by
    # more than `margin` x |champion's value| (relative margin) and its class accuracy is not under the floor.
    primary_metric: str = "fd_domain"
    greater_is_better: bool = False
    margin: float = 0.02
    class_accuracy_metric: str = "class_accuracy"
    class_accuracy_floor: float = 0.3
    # The promotion lock: a holder that has not released after `lock_lease_s` is presumed dead;
    # a waiter gives up after `lock_timeout_s`.
    lock_lease_s: float = 120.0
    lock_timeout_s: float = 900.0


def load_register_config(
    path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> RegisterConfig:
    return load_section("register", RegisterConfig, path, overrides)
