"""A NaN in D's loss at one training step, to exercise the trainer's divergence guard on its real code path.

In this process: ``inject_nan(monkeypatch.setattr, at_step=3, times=1)``. In a child process (`productgan train`
run as a command): ``child_env(env, at_step=5)`` puts ``tests/nan_child/`` first on the child's PYTHONPATH only;
its sitecustomize calls ``inject_nan`` there at start-up. The trainer knows nothing of either.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

AT_STEP_ENV = "NAN_TEST_AT_STEP"  # read only by tests/nan_child/sitecustomize.py
TIMES_ENV = "NAN_TEST_TIMES"
CHILD_DIR = Path(__file__).resolve().parent / "nan_child"


def inject_nan(setattr_: Callable[[Any, str, Any], None], at_step: int, times: int | None = None) -> None:
    """Each time the trainer runs step ``at_step`` (at most ``times`` times; None: every time), D's loss of that
    step is NaN and so are D's gradients, as a NaN loss leaves them: the optimiser steps on them and the guard
    must notice, restore the last checkpoint and go on, or fail the run. ``setattr_``: ``monkeypatch.setattr``
    (undone after the test) or the builtin ``setattr`` (a child process that ends with the run)."""
    import torch

    from productgan.gan.trainer import Trainer

    train_step = Trainer.train_step
    done = 0

    def poisoned_train_step(self: Trainer, step: int) -> None:
        nonlocal done
        if step != at_step or (times is not None and done >= times):
            return train_step(self, step)
        done += 1
        accumulate = self.loss.accumulate_d_main

        def accumulate_nan(*args: Any, **kwargs: Any) -> Any:
            out = accumulate(*args, **kwargs)
            nan = torch.tensor(float("nan"), device=out.loss.device)
            for p in self.D.parameters():
                if p.grad is not None:
                    p.grad.mul_(nan)
            out.loss = out.loss * nan
            return out

        self.loss.accumulate_d_main = accumulate_nan  # this step only: the instance attribute goes again below
        try:
            return train_step(self, step)
        finally:
            del self.loss.accumulate_d_main

    setattr_(Trainer, "train_step", poisoned_train_step)


def child_env(env: dict[str, str], at_step: int, times: int | None = None) -> dict[str, str]:
    """``env`` for a child process whose training gets the NaN of ``inject_nan``."""
    out = {**env, AT_STEP_ENV: str(at_step)}
    out["PYTHONPATH"] = os.pathsep.join([str(CHILD_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if times is not None:
        out[TIMES_ENV] = str(times)
    return out
