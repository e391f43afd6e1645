"""The life of a training run around the loop: its MLflow run, stop signals, messages and output folder.

The trainer decides; this module records. ``RunLifecycle`` starts (or, on ``--resume``, continues) the
MLflow run with the run's lineage (dataset version, params hash, git commit: handed in by the command),
turns SIGTERM/SIGINT into a flag the loop acts on at the next step boundary, and writes the outputs:
``generator.safetensors`` + ``generator.json``, ``grid.png``, the metrics and loss-curve files, and
``run.json`` last (downstream steps trust a FINISHED ``run.json``). A failed run leaves no generator.
Everything here happens on rank 0 only; the other ranks get quiet no-ops.

A tracking store that is down does not stop the run (``tracking.py`` keeps its calls). When calls are still
kept at the end, ``run.json`` says so (``mlflow_pending``: what MLflow lacks, the journal, the command that
sends it) and the user is told; ``sync_runs`` (``productgan sync-run``) sends them later and completes
``run.json``. Everything recorded or printed about the tracking store is redacted.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
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
from productgan.io import atomic_open, atomic_write_json, read_json
from productgan.lineage import Lineage
from productgan.redact import redact
from productgan.tracking import PENDING_DIR, SYNC_COMMAND, Tracker, pending_journals, sync_journals

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


class RunLifecycle:
    def __init__(self, params: TrainParams, out_dir: Path, lineage: Lineage, main: bool, track: bool) -> None:
        self.params, self.out_dir, self.lineage, self.main = params, out_dir, lineage, main
        self.tracker = Tracker(enabled=track and main, pending_root=Path(params.checkpoint_dir) / PENDING_DIR,
                               say=self.say)
        self.stop_signal: int | None = None
        self.pbar: Any = None
        self.total_steps = params.steps  # the trainer sets both once a time budget is a step count
        self.time_budget: dict[str, Any] | None = None

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

        self.pbar = tqdm.tqdm(total=self.total_steps, initial=step, desc=f"train {self.params.recipe}",
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
        message = redact(message)
        if self._bar_shown():
            self.pbar.write(f"train: {message}", file=sys.stderr)
        else:
            print(f"train: {message}", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------------------------------- tracking

    def start_tracking(self, run_id: str | None, logged_params: dict[str, Any], journal_id: str | None = None) -> None:
        """Continue MLflow run ``run_id`` and its journal of kept calls (a resume) or start a new run and log
        ``logged_params`` on it."""
        if not self.tracker.enabled:
            return
        p, lineage = self.params, self.lineage
        others = [j for j in pending_journals(p.checkpoint_dir) if j.name != journal_id]
        if others:
            self.say(f"{len(others)} earlier run(s) still have MLflow calls kept in {others[0].parent} (the server "
                     f"was down); `{self._sync_command()}` sends them")
        tags = {"recipe": p.recipe, "dataset_version": lineage.dataset_version, "git_commit": lineage.git_commit,
                "code_version": lineage.code_version, "params_hash": lineage.params_hash, "productgan.step": "train"}
        new = self.tracker.start(p.experiment, run_id, run_name=f"train-{p.recipe}",
                                 tags={k: str(v) for k, v in tags.items() if v is not None}, journal_id=journal_id,
                                 meta={"run_file": str((self.out_dir / RUN_FILE).resolve())})
        if new:
            self.tracker.log_params({**dataclasses.asdict(p), "dataset_version": lineage.dataset_version,
                                     **logged_params})

    def log_interval(self, step: int, row: dict[str, float], extra: dict[str, float], seconds: float) -> None:
        """One logging interval's means (``row``: HISTORY_KEYS) and ``extra`` gauges: MLflow and the console.
        ``seconds`` of training so far: the console also shows how much of a ``max_minutes`` budget is spent."""
        if not self.main:
            return
        self.tracker.log_metrics({**{k: v for k, v in row.items() if k != "step"}, **extra}, step)
        text = f"loss_d {row['loss_d']:.3f} loss_g {row['loss_g']:.3f} {row['images_per_s']:,.0f} img/s"
        if "augment_p" in extra:  # adaptive augmentation: how strongly D is being held back
            text += f" augment p {extra['augment_p']:.2f}"
        if self.params.max_minutes:
            text += f", {seconds / 60:.1f} of {self.params.max_minutes:g} min"
        if self._bar_shown():
            self.pbar.set_postfix_str(text)
        else:
            print(f"train: step {step}/{self.total_steps} {text}", flush=True)

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
        self._write_run_file("FINISHED", pending=self._close_tracking())  # last: downstream steps trust it

    def fail(self, message: str) -> None:
        if not self.main:
            return
        self.tracker.set_tags({"failure": message[:5000]})
        self.tracker.end("FAILED")
        self.clean_outputs()
        self._write_run_file("FAILED", message, pending=self._close_tracking())
        print(f"train: FAILED: {redact(message)}", file=sys.stderr, flush=True)

    def interrupted(self, step: int, checkpoint_dir: Path) -> TrainResult:
        name = signal.Signals(self.stop_signal).name if self.stop_signal else "signal"
        message = (f"stopped by {name} at step {step}; checkpoint written to {checkpoint_dir}; "
                   "run again with --resume to continue")
        self.tracker.end("KILLED")
        self._close_tracking()
        self.say(message)
        return TrainResult("INTERRUPTED", step, self.run_id, message, exit_code=128 + (self.stop_signal or
                                                                                       signal.SIGTERM))

    # ----------------------------------------------------------------------------------------- outputs

    def clean_outputs(self) -> None:
        """Remove a previous run's generator from the output folder (a failed run must not leave one)."""
        for name in (WEIGHTS, CONFIG, RUN_FILE, GRID_FILE):
            (self.out_dir / name).unlink(missing_ok=True)

    def _sync_command(self) -> str:
        return f"{SYNC_COMMAND} --checkpoints {self.params.checkpoint_dir}"

    def _close_tracking(self) -> dict[str, str] | None:
        """A last try to send the kept MLflow calls; what is still missing is said (and returned for run.json)."""
        missing = self.tracker.close()
        if missing is None:
            return None
        pending = {"missing": missing, "journal": str(self.tracker.journal.folder), "command": self._sync_command()}
        self.say(f"WARNING: the MLflow run is not complete: {self.tracker.tracking_uri} does not answer. Missing "
                 f"there: {missing}. Nothing is lost: these calls are kept in {pending['journal']}. When the "
                 f"server answers, run `{pending['command']}` to send them (register needs them)")
        return pending

    def _write_run_file(self, status: str, message: str | None = None, pending: dict[str, str] | None = None) -> None:
        # the Tracker already holds the URI redacted; redacting here again keeps this file safe on its own
        doc = {"run_id": self.tracker.run_id, "tracking_uri": redact(self.tracker.tracking_uri),
               "experiment_id": self.tracker.experiment_id, "status": status}
        if message:
            doc["message"] = redact(message)
        if self.time_budget:
            doc["time_budget"] = self.time_budget  # max_minutes as the step count this run trained to
        if pending:
            doc["mlflow_pending"] = pending
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


def sync_runs(checkpoint_dir: str | os.PathLike[str], say: Callable[[str], None] = print) -> bool:
    """Send the MLflow calls that training runs in ``checkpoint_dir`` kept while the tracking store was down
    (``productgan sync-run``), and complete each run's ``run.json``. Returns True when nothing is kept any more.
    Run it while no training uses that checkpoint folder."""

    def complete(folder: Path, tracker: Tracker) -> None:
        run_file = tracker.journal.meta.get("run_file")
        if run_file:
            _complete_run_file(Path(run_file), folder.name, tracker)
            say(f"sync-run: {run_file} updated")

    return sync_journals(checkpoint_dir, say, complete)


def _complete_run_file(path: Path, journal_id: str, tracker: Tracker) -> None:
    """Record the run id in a run.json that waited for these calls (not one a later run wrote since)."""
    if not path.is_file():
        return
    doc = read_json(path)
    if Path(str((doc.get("mlflow_pending") or {}).get("journal", ""))).name != journal_id:
        return
    doc.pop("mlflow_pending")
    doc.update(run_id=tracker.run_id, experiment_id=tracker.experiment_id, tracking_uri=tracker.tracking_uri)
    atomic_write_json(path, doc)
