"""A time budget as a step count: ``train.max_minutes`` becomes the number of steps that fit, once, at the start
of a run, from a short measured warm-up. Everything that follows the run's progress (the learning-rate schedule,
top-k) then depends on the step only: a resumed run keeps the recorded count and continues bit for bit, and a
run is the same as one of ``steps: <that count>`` without a budget, whatever the machine's load did meanwhile.

The warm-up (``Trainer._measure_time_budget``) trains a few steps from the run's state and then restores that
state exactly, as a resume does, so it leaves no trace in the weights. It measures a training step and what the
loop adds every ``sample_every`` steps (a sample grid) and every ``checkpoint_every`` steps (a checkpoint); the
budget pays for the warm-up too, so the run takes about ``max_minutes`` in all (the machine's load may change
after the warm-up: the count stays).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

WARMUP_SECONDS = 5.0  # the warm-up's length at most (1% of make run's 10 minutes) ...
WARMUP_SHARE = 0.02  # ... and at most this share of the budget
WARMUP_STEPS = (3, 1000)  # timed steps at least and at most


@dataclass(frozen=True)
class TimeBudget:
    """What the warm-up measured (seconds) and the step count it gave ``max_minutes``."""

    max_minutes: float
    steps: int
    step_s: float  # one training step, host checks included
    grid_s: float  # one sample grid (every sample_every steps)
    checkpoint_s: float  # one checkpoint (every checkpoint_every steps)
    warmup_s: float  # the warm-up itself, paid out of the budget
    warmup_steps: int

    @classmethod
    def measured(cls, max_minutes: float, step_s: float, grid_s: float, checkpoint_s: float, warmup_s: float,
                 warmup_steps: int, sample_every: int, checkpoint_every: int) -> TimeBudget:
        per_step = step_s + grid_s / sample_every + checkpoint_s / checkpoint_every
        steps = max(1, int((max_minutes * 60.0 - warmup_s) / per_step))
        return cls(max_minutes, steps, step_s, grid_s, checkpoint_s, warmup_s, warmup_steps)

    def for_minutes(self, max_minutes: float, sample_every: int, checkpoint_every: int) -> TimeBudget:
        """The recorded count when ``max_minutes`` is the recorded one (a resume keeps it); else the count the
        recorded measurements give the new budget."""
        if max_minutes == self.max_minutes:
            return self
        return self.measured(max_minutes, self.step_s, self.grid_s, self.checkpoint_s, self.warmup_s,
                             self.warmup_steps, sample_every, checkpoint_every)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> TimeBudget | None:
        return cls(**doc) if doc else None

    def describe(self) -> str:
        return (f"time budget {self.max_minutes:g} min = {self.steps:,} steps (measured over {self.warmup_steps} "
                f"warm-up steps in {self.warmup_s:.1f} s: a step {self.step_s * 1000:.1f} ms, a sample grid "
                f"{self.grid_s:.2f} s, a checkpoint {self.checkpoint_s:.2f} s); the count is recorded and kept")


def warmup_steps(estimate_s: float, max_minutes: float) -> int:
    """How many steps to time, from a first estimate of one step's seconds."""
    target = min(WARMUP_SECONDS, WARMUP_SHARE * max_minutes * 60.0)
    low, high = WARMUP_STEPS
    return int(min(high, max(low, target / max(estimate_s, 1e-9))))
