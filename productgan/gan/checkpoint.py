"""Training checkpoints: written atomically, read without unpickling, the last few kept.

A checkpoint is ``ckpt-<step>.pt`` in the checkpoint folder, written with ``torch.save`` to a temp file
in the same folder, fsynced, then renamed over its final name: a SIGKILL at any moment leaves either the
old set of checkpoints or the new one, never half a file. It is read with ``weights_only=True`` (tensors,
numbers, strings, lists and dicts only: RNG states are stored as tensors). Loading falls back to the
previous checkpoint if the newest one cannot be read.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from productgan.io import atomic_open

_NAME = re.compile(r"^ckpt-(\d{8,})\.pt$")


def checkpoint_path(folder: str | os.PathLike[str], step: int) -> Path:
    return Path(folder) / f"ckpt-{step:08d}.pt"


def list_checkpoints(folder: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in ``folder``, oldest first."""
    root = Path(folder)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_checkpoint(folder: str | os.PathLike[str], step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` as the checkpoint of ``step``, then delete all but the newest ``keep``."""
    path = checkpoint_path(folder, step)
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)
    for _step, old in list_checkpoints(folder)[: -max(1, keep)]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_latest(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint in ``folder`` as (path, state), or None when there is none."""
    for _step, path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except Exception as exc:  # a damaged file must not stop a resume
            print(f"train: checkpoint {path} is unreadable ({exc}); trying the previous one", file=sys.stderr)
    return None


PREVIOUS = "previous"


def set_aside_checkpoints(folder: str | os.PathLike[str]) -> int:
    """Move the checkpoints in ``folder`` to ``folder/previous`` (replacing what was there) so a new run
    starts clean without destroying the last one's work; returns how many were moved."""
    root = Path(folder)
    found = list_checkpoints(root)
    if not found:
        return 0
    previous = root / PREVIOUS
    if previous.is_dir():
        shutil.rmtree(previous)
    previous.mkdir(parents=True)
    for _step, path in found:
        os.replace(path, previous / path.name)
    return len(found)


def remove_temp_files(folder: str | os.PathLike[str]) -> None:
    """Temp files left by a process killed while writing (never a valid checkpoint)."""
    root = Path(folder)
    if root.is_dir():
        for p in root.glob(".ckpt-*.tmp"):
            p.unlink(missing_ok=True)
