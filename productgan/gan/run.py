"""The life of a training run around the loop: its MLflow run, stop signals, messages and output folder.

The trainer decides; this module records. ``RunLifecycle`` starts (or, on ``--resume``, continues) the
MLflow run with the run's lineage (dataset version, params hash, git commit: handed in by the command),
turns SIGTERM/SIGINT into a flag the loop acts on at the next step boundary, and writes the outputs:
``generator.safetensors`` + ``generator.json``, ``grid.png``, the metrics and loss-curve files, and
``run.json`` last (downstream steps trust a FINISHED ``run.json``). A failed run leaves no generator.
Everything here happens on rank 0 only; the other ranks get quiet no-ops.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from productgan.gan.config import GeneratorConfig
from productgan.gan.export import CONFIG, WEIGHTS, save_generator
from productgan.gan.recipes import TrainParams
from productgan.gan.sample import save_png
from productgan.gan.tracking import Tracker
from productgan.io import atomic_open, atomic_write_json
from productgan.lineage import Lineage

RUN_FILE = "run.json"
GRID_FILE = "grid.png"
HISTORY_KEYS = ("step", "loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g", "images_per_s")


@dataclass
class TrainResult:
    status: str  # FINISHED | FAILED | INTERRUPTED
    step: int
    run_id: str | None
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0


def flat_params(params: TrainParams) -> dict[str, Any]:
    """The run's knobs with the chosen recipe's knobs flattened in (``recipe.lr_g`` ...)."""
    doc = dataclasses.asdict(params)
    chosen = doc.pop(params.recipe)
    doc.pop("baseline", None)
    doc.pop("default", None)
    return {**doc, **{f"recipe.{k}": v for k, v in chosen.items()}}


class RunLifecycle:
    def __init__(self, params: TrainParams, out_dir: Path, lineage: Lineage, main: bool, track: bool) -> None:
        self.params, self.out_dir, self.lineage, self.main = params, out_dir, lineage, main
        self.tracker = Tracker(enabled=track and main)
        self.stop_signal: int | None = None
        self.pbar: Any = None

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id

    # ------------------------------------------------------------------------- signals and messages

    @contextmanager
    def catching_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT set ``stop_signal`` (the loop checkpoints and stops at the next step boundary)."""

        def on_signal(signum: int, _frame: Any) -> None:
            self.stop_signal = signum

        handlers = {}
        if sys.platform != "win32" and threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in handlers.items():
                signal.signal(sig, old)

    @contextmanager
    def progress_bar(self, step: int) -> Iterator[Any]:
        import tqdm

        self.pbar = tqdm.tqdm(total=self.params.steps, initial=step, desc=f"train {self.params.recipe}",
                              unit="step", disable=None if self.main else True, dynamic_ncols=True)
        try:
            yield self.pbar
        finally:
            self.pbar.close()
            self.pbar = None

    def _bar_shown(self) -> bool:
        return self.pbar is not None and not self.pbar.disable

    def say(self, message: str) -> None:
        if not self.main:
            return
        if self._bar_shown():
            self.pbar.write(f"train: {message}", file=sys.stderr)
        else:
            print(f"train: {message}", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------------------------------- tracking

    def start_tracking(self, run_id: str | None, logged_params: dict[str, Any]) -> None:
        """Continue MLflow run ``run_id`` (a resume) or start a new one and log ``logged_params`` on it."""
        p, lineage = self.params, self.lineage
        tags = {"recipe": p.recipe, "dataset_version": lineage.dataset_version, "git_commit": lineage.git_commit,
                "params_hash": lineage.params_hash, "productgan.step": "train"}
        self.tracker.start(p.experiment, run_id, run_name=f"train-{p.recipe}",
                           tags={k: str(v) for k, v in tags.items() if v is not None})
        if run_id is None and self.tracker.run_id:
            self.tracker.log_params({**flat_params(p), "dataset_version": lineage.dataset_version,
                                     **logged_params})

    def log_interval(self, step: int, row: dict[str, float], extra: dict[str, float]) -> None:
        """One logging interval's means (``row``: HISTORY_KEYS) and ``extra`` gauges: MLflow and the console."""
        if not self.main:
            return
        self.tracker.log_metrics({**{k: v for k, v in row.items() if k != "step"}, **extra}, step)
        text = f"loss_d {row['loss_d']:.3f} loss_g {row['loss_g']:.3f} {row['images_per_s']:,.0f} img/s"
        if self._bar_shown():
            self.pbar.set_postfix_str(text)
        else:
            print(f"train: step {step}/{self.params.steps} {text}", flush=True)

    def log_grid(self, grid: np.ndarray, step: int) -> None:
        if self.main:
            self.tracker.log_image(grid, "samples", step)
            save_png(grid, self.out_dir / GRID_FILE)

    # ----------------------------------------------------------------------------------------- endings

    def finish(self, model: nn.Module, cfg: GeneratorConfig, grid: np.ndarray, metrics: dict[str, Any],
               history: dict[str, list[float]]) -> None:
        """Export the generator, grid, metrics and loss curves, close the MLflow run, then write run.json."""
        if not self.main:
            return
        step = metrics["step"]
        save_generator(model, cfg, self.out_dir)
        save_png(grid, self.out_dir / GRID_FILE)
        self._write_metrics(metrics, history)
        self.tracker.log_metrics({"final_step": step, "train_minutes": metrics["train_minutes"],
                                  "images_per_s_mean": metrics["images_per_s"] or 0.0,
                                  "restarts": metrics["restarts"]}, step)
        self.tracker.log_image(grid, "samples", step)
        self.tracker.log_artifacts(str(self.out_dir), "generator")
        self.tracker.end("FINISHED")
        self._write_run_file("FINISHED")  # last: downstream steps trust a FINISHED run.json

    def fail(self, message: str) -> None:
        if not self.main:
            return
        self.tracker.set_tags({"failure": message[:5000]})
        self.tracker.end("FAILED")
        self.clean_outputs()
        self._write_run_file("FAILED", message)
        print(f"train: FAILED: {message}", file=sys.stderr, flush=True)

    def interrupted(self, step: int, checkpoint_dir: Path) -> TrainResult:
        name = signal.Signals(self.stop_signal).name if self.stop_signal else "signal"
        message = (f"stopped by {name} at step {step}; checkpoint written to {checkpoint_dir}; "
                   "run again with --resume to continue")
        self.tracker.end("KILLED")
        self.say(message)
        return TrainResult("INTERRUPTED", step, self.run_id, message, exit_code=128 + (self.stop_signal or
                                                                                       signal.SIGTERM))

    # ----------------------------------------------------------------------------------------- outputs

    def clean_outputs(self) -> None:
        """Remove a previous run's generator from the output folder (a failed run must not leave one)."""
        for name in (WEIGHTS, CONFIG, RUN_FILE, GRID_FILE):
            (self.out_dir / name).unlink(missing_ok=True)

    def _write_run_file(self, status: str, message: str | None = None) -> None:
        doc = {"run_id": self.tracker.run_id, "tracking_uri": self.tracker.tracking_uri,
               "experiment_id": self.tracker.experiment_id, "status": status}
        if message:
            doc["message"] = message
        atomic_write_json(self.out_dir / RUN_FILE, doc)

    def _write_metrics(self, metrics: dict[str, Any], history: dict[str, list[float]]) -> None:
        atomic_write_json(self.params.metrics_file, metrics)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(HISTORY_KEYS)
        for row in zip(*(history[k] for k in HISTORY_KEYS), strict=True):
            writer.writerow([int(row[0]), *(f"{v:.6g}" for v in row[1:])])
        with atomic_open(self.params.plots_file, "wb") as fh:
            fh.write(buf.getvalue().encode("utf-8"))
