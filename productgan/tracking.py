"""The one way a step records into MLflow, through a tracking-server outage: train (its run), evaluate (its
metrics and files on the training run) and register (its run's params, decision and end) all log through
``Tracker``, so none of their records is lost when the server is down.

Every call (open the run, params, tags, metrics, sample grids, the generator files, the end status) goes to
MLflow at once while the store answers. When a call fails because it does not (connection refused, timeout,
5xx, an S3 store behind it down ...), that call and every later one are kept, in order, in a journal on disk:
``<root>/mlflow-pending/<id>/`` (``ops.jsonl``, ``meta.json``, and the images and generator files in ``files/``;
train's root is its checkpoint folder, which a resume and an evicted pod's successor share; evaluate's and
register's is the real-statistics cache, ``step_pending_root``, a volume on Kubeflow). The step goes on without
waiting: the store is asked again (``/health``, a few seconds at most) every ``retry_every_s`` and, once it
answers, the journal is sent in order and emptied. A step that ends with calls still kept says what MLflow
lacks; ``productgan sync-run`` sends them later (a training run killed during an outage sends them itself when
``--resume`` continues it).

MLflow retries each failed HTTP request 7 times with back-off by default (minutes per call): train and
evaluate cap it (``HTTP_DEFAULTS``; the user's own settings win), as nothing is lost by failing fast (register,
whose model upload needs MLflow's retries, does not). A call the store refuses
(a bad value, a deleted run: retrying cannot help) is dropped with a warning. The run id and the journal id are
stored in every checkpoint, so ``--resume`` continues both.

Tracking URI: ``MLFLOW_TRACKING_URI`` or MLflow's default (``sqlite:///mlflow.db`` in the working directory).
What is printed or recorded of it is redacted (``productgan.redact``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from productgan.io import atomic_open, atomic_write_json, read_json
from productgan.redact import redact

PENDING_DIR = "mlflow-pending"  # under the checkpoint folder
SYNC_COMMAND = "productgan sync-run"
RETRY_EVERY_S = 30.0  # while the store is down: how often it is asked again
PROBE_TIMEOUT_S = 3.0  # a live server answers /health in milliseconds
# MLflow's per-request retries and timeout for train (MLflow's own: 7 retries with back-off, 120 s timeout).
# No retry: a call that fails is kept and sent later, so failing fast loses nothing.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
# MLflow error codes that retrying cannot fix: the call is dropped, not kept
REFUSED_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                           "INVALID_STATE", "BAD_REQUEST", "MALFORMED_REQUEST"})


def cap_http_retries() -> None:
    """Fail fast instead of blocking training for minutes per call (a kept call loses nothing)."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the store did not answer (keep the call); False when it refused the call."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code not in REFUSED_CODES
    return not isinstance(exc, TypeError | ValueError | KeyError | AttributeError)  # our own mistakes: drop


def now_ms() -> int:
    return int(time.time() * 1000)


class Journal:
    """The calls not yet in MLflow, oldest first, in a folder that outlives the process (created on first use)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta: dict[str, Any] = read_json(folder / "meta.json") if (folder / "meta.json").is_file() else {}
        self.ops: list[dict[str, Any]] = []
        ops_file = folder / "ops.jsonl"
        if ops_file.is_file():
            for line in ops_file.read_text(encoding="utf-8").splitlines():
                try:
                    self.ops.append(json.loads(line))
                except ValueError:  # the last line of a process killed while appending
                    break

    @property
    def id(self) -> str:
        return self.folder.name

    def add(self, op: dict[str, Any]) -> None:
        if not (self.folder / "meta.json").is_file():
            self.save_meta()
        self.ops.append(op)
        with open(self.folder / "ops.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(op) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def save(self) -> None:
        """Rewrite the journal after some calls were sent (files of sent calls are removed)."""
        if not self.folder.is_dir():
            return
        self.save_meta()
        with atomic_open(self.folder / "ops.jsonl", "wb") as fh:
            fh.write("".join(json.dumps(op) + "\n" for op in self.ops).encode("utf-8"))
        used = {op.get("file") or op.get("dir") for op in self.ops}
        files = self.folder / "files"
        for path in files.iterdir() if files.is_dir() else ():
            if f"files/{path.name}" not in used:
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def save_meta(self) -> None:
        atomic_write_json(self.folder / "meta.json", self.meta)

    def keep_file(self, name: str) -> tuple[Path, str]:
        """(absolute path, journal-relative name) for a new file kept with a call."""
        rel = f"files/{len(self.ops):06d}-{uuid.uuid4().hex[:6]}-{name}"
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def pending_journals(checkpoint_dir: str | os.PathLike[str]) -> list[Path]:
    """The journal folders of runs in ``checkpoint_dir`` with calls still kept, oldest first."""
    root = Path(checkpoint_dir) / PENDING_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "ops.jsonl").is_file() and (p / "ops.jsonl").stat().st_size]
    return sorted(found, key=lambda p: (Journal(p).meta.get("created") or 0, p.name))


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def step_pending_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where evaluate and register keep the calls MLflow did not take: beside the real statistics they cache
    (``evaluate.cache_dir`` / $PRODUCTGAN_CACHE / .cache/productgan; on Kubeflow the stats-cache volume)."""
    from productgan.metrics.cache import cache_root

    return cache_root(cache_dir) / PENDING_DIR


class Tracker:
    def __init__(self, enabled: bool = True, pending_root: str | os.PathLike[str] = PENDING_DIR,
                 say: Callable[[str], None] = _print, retry_every_s: float | None = None) -> None:
        self.enabled = enabled
        self.pending_root = Path(pending_root)
        self.retry_every_s = RETRY_EVERY_S if retry_every_s is None else retry_every_s
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.tracking_uri: str | None = None  # redacted: what run.json records and messages show
        self.journal: Journal | None = None
        self._say = say
        self._uri: str | None = None
        self._client: Any = None
        self._down: str | None = None  # why the store stopped answering, while calls are kept
        self._next_try = 0.0
        self._warned: set[str] = set()

    @property
    def journal_id(self) -> str | None:
        return self.journal.id if self.journal is not None else None

    @property
    def pending(self) -> list[dict[str, Any]]:
        return self.journal.ops if self.journal is not None else []

    def say(self, message: str) -> None:
        self._say(redact(message))

    # ------------------------------------------------------------------------------------ opening a run

    def connect(self, journal_id: str | None = None, meta: dict[str, Any] | None = None, uri: str | None = None,
                fail_fast: bool = True) -> None:
        """Talk to MLflow's current tracking store (or ``uri``); continue journal ``journal_id`` (a resume) or
        start one. ``meta``: recorded with the journal (``run_file``: the run.json that ``sync-run`` completes).
        ``fail_fast``: cap MLflow's HTTP retries (``HTTP_DEFAULTS``)."""
        import mlflow
        from mlflow.tracking import MlflowClient

        if fail_fast:
            cap_http_retries()
        self._uri = uri or mlflow.get_tracking_uri()
        self.tracking_uri = redact(self._uri)
        self._client = MlflowClient(self._uri)
        self.journal = Journal(self.pending_root / (journal_id or uuid.uuid4().hex[:12]))
        self.run_id = self.run_id or self.journal.meta.get("run_id")
        self.experiment_id = self.journal.meta.get("experiment_id")
        self.journal.meta.setdefault("tracking_uri", self.tracking_uri)
        self.journal.meta.setdefault("created", now_ms())
        self.journal.meta.update(meta or {})
        if self.run_id:
            self.journal.meta["run_id"] = self.run_id
        if self.pending:
            self._down = "kept by an earlier session"
            self._next_try = 0.0
            self.say(f"{len(self.pending)} MLflow call(s) of an earlier session are kept in {self.journal.folder}; "
                     f"they are sent first, when {self.tracking_uri} answers")

    def attach(self, run_id: str, meta: dict[str, Any] | None = None, uri: str | None = None,
               fail_fast: bool = True) -> None:
        """Record onto the existing run ``run_id`` (as it is: not reopened), in a journal of its own."""
        if not self.enabled:
            return
        self.run_id = run_id
        self.connect(None, meta, uri, fail_fast)

    def start(self, experiment: str, run_id: str | None, run_name: str, tags: dict[str, str],
              journal_id: str | None = None, meta: dict[str, Any] | None = None) -> bool:
        """Continue run ``run_id`` (or the run that journal ``journal_id`` opens), else open a new one.
        Returns True for a new run (whose params the caller logs next)."""
        if not self.enabled:
            return False
        self.run_id = run_id
        self.connect(journal_id, meta)
        if self.run_id is None and any(op["op"] == "open_run" for op in self.pending):
            return False  # the kept calls open the run (and log its params) when the store answers
        new = self.run_id is None
        self._submit({"op": "open_run", "run_id": self.run_id, "experiment": experiment, "run_name": run_name,
                      "tags": tags, "time": now_ms()})
        return new

    def _open_run(self, op: dict[str, Any]) -> None:
        from mlflow.exceptions import MlflowException

        client, run_id = self._client, op.get("run_id") or self.run_id
        if run_id:
            try:
                run = client.get_run(run_id)
                client.update_run(run_id, status="RUNNING")
                self.run_id, self.experiment_id = run_id, run.info.experiment_id
                return
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                self.say(f"MLflow run {run_id} not found at {self.tracking_uri}; starting a new run")
        exp = client.get_experiment_by_name(op["experiment"])
        experiment_id = exp.experiment_id if exp else client.create_experiment(op["experiment"])
        run = client.create_run(experiment_id, start_time=op["time"], tags=op["tags"], run_name=op["run_name"])
        self.run_id, self.experiment_id = run.info.run_id, experiment_id
        if self.journal is not None:
            self.journal.meta.update(run_id=self.run_id, experiment_id=experiment_id)
            if self.journal.folder.is_dir():
                self.journal.save_meta()

    # ------------------------------------------------------------------------------------ the calls

    def log_params(self, params: dict[str, Any]) -> None:
        items = [[k, str(v)[:6000]] for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._submit({"op": "params", "params": items[i : i + 100]})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._submit({"op": "tags", "tags": {k: str(v) for k, v in tags.items() if v is not None}})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = now_ms()
        self._submit({"op": "metrics", "metrics": [[k, float(v), now, int(step)] for k, v in metrics.items()]})

    def log_image(self, image_hwc: np.ndarray, key: str, step: int) -> None:
        """An image series (MLflow shows it by step), e.g. the sample grid."""
        self._submit({"op": "image", "image": image_hwc, "key": key, "step": int(step), "time": now_ms()})

    def log_artifacts(self, folder: str, artifact_path: str) -> None:
        self._submit({"op": "artifacts", "folder": str(folder), "artifact_path": artifact_path})

    def end(self, status: str) -> None:
        """status: FINISHED | FAILED | KILLED."""
        self._submit({"op": "end", "status": status, "time": now_ms()})

    def _execute(self, op: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        kind = op["op"]
        if kind == "open_run":
            self._open_run(op)
            return
        if self.run_id is None:
            raise ValueError("the MLflow run was never opened")
        client, run_id = self._client, self.run_id
        if kind == "params":
            client.log_batch(run_id, params=[Param(k, v) for k, v in op["params"]])
        elif kind == "tags":
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["tags"].items()])
        elif kind == "metrics":
            client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in op["metrics"]])
        elif kind == "image":
            if "image" in op:
                image = op["image"].squeeze(-1) if op["image"].shape[-1] == 1 else op["image"]
            else:
                from PIL import Image

                with Image.open(self.journal.folder / op["file"]) as im:
                    image = im.copy()
            client.log_image(run_id, image, key=op["key"], step=op["step"], timestamp=op["time"], synchronous=True)
        elif kind == "artifacts":
            folder = op["folder"] if "folder" in op else str(self.journal.folder / op["dir"])
            client.log_artifacts(run_id, folder, op["artifact_path"])
        elif kind == "end":
            client.set_terminated(run_id, status=op["status"], end_time=op["time"])
        else:
            raise ValueError(f"unknown kept call {kind!r}")

    def _submit(self, op: dict[str, Any]) -> None:
        """Send ``op`` now, or keep it when the store is down (or older calls are still kept)."""
        if not self.enabled or self._client is None:
            return
        if self.pending:
            self._keep(op)
            self._retry()
            return
        try:
            self._execute(op)
        except Exception as exc:  # tracking must never stop the step
            if not is_outage(exc):
                self._refused(op, exc)
                return
            self._went_down(exc)
            self._keep(op)

    def _keep(self, op: dict[str, Any]) -> None:
        """Add ``op`` to the journal, with a copy of its image or folder (they may change before it is sent)."""
        assert self.journal is not None
        op = dict(op)
        if "image" in op:
            from productgan.gan.sample import save_png

            path, op["file"] = self.journal.keep_file(f"{op['key']}-{op['step']}.png")
            save_png(op.pop("image"), path)
        if "folder" in op:
            path, op["dir"] = self.journal.keep_file(op["artifact_path"].replace("/", "_"))
            shutil.copytree(op.pop("folder"), path)
        self.journal.add(op)

    def _refused(self, op: dict[str, Any], exc: BaseException) -> None:
        what = op["op"]
        if what not in self._warned:
            self._warned.add(what)
            self.say(f"MLflow refused {what} ({type(exc).__name__}: {exc}); it is not retried, the step goes on")

    def _went_down(self, exc: BaseException) -> None:
        from productgan.registry.store import unreachable_reason

        self._next_try = time.monotonic() + self.retry_every_s
        if self._down is not None:  # still down: said already
            return
        from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT

        self._down = unreachable_reason(exc, MLFLOW_HTTP_REQUEST_TIMEOUT.get())
        self.say(f"MLflow at {self.tracking_uri} does not answer ({self._down}); the step goes on. Its calls are "
                 f"kept in {self.journal.folder} and sent when it answers (asked again every "
                 f"{self.retry_every_s:g} s)")

    # ------------------------------------------------------------------------------ sending kept calls

    def _answers(self) -> bool:
        """A tracking server answers /health within seconds (other stores: try the calls themselves)."""
        if not (self._uri or "").startswith(("http://", "https://")):
            return True
        from productgan.registry.store import TrackingUnavailable, require_server

        try:
            require_server(self._uri, timeout_s=PROBE_TIMEOUT_S, retries=0)
        except TrackingUnavailable:
            return False
        return True

    def _retry(self, force: bool = False) -> None:
        if not self.pending or (not force and time.monotonic() < self._next_try):
            return
        self._next_try = time.monotonic() + self.retry_every_s
        if self._answers():
            self.flush()

    def flush(self) -> int:
        """Send the kept calls in order (consecutive metrics in one batch); stop at the first outage.
        Returns how many calls were sent."""
        assert self.journal is not None
        sent, ops = 0, self.journal.ops
        while ops:
            take = 1
            if ops[0]["op"] == "metrics":  # merge consecutive metric calls into batches MLflow accepts
                size = len(ops[0]["metrics"])
                while (take < len(ops) and ops[take]["op"] == "metrics"
                       and size + len(ops[take]["metrics"]) <= MAX_METRICS_PER_BATCH):
                    size += len(ops[take]["metrics"])
                    take += 1
                op = {"op": "metrics", "metrics": [m for o in ops[:take] for m in o["metrics"]]}
            else:
                op = ops[0]
            try:
                self._execute(op)
            except Exception as exc:
                if is_outage(exc):
                    self._went_down(exc)
                    break
                self._refused(op, exc)
            del ops[:take]
            sent += take
        self.journal.save()
        if not ops and sent:
            self.say(f"MLflow at {self.tracking_uri} answers again: sent the {sent} call(s) kept while it was down")
            self._down = None
        return sent

    def close(self) -> str | None:
        """A last try to send the kept calls; returns what MLflow still lacks (None: nothing). A journal with
        nothing left in it is removed."""
        if not self.enabled or self.journal is None:
            return None
        self._retry(force=True)
        if not self.pending:
            self.journal.remove()
            return None
        return self.missing()

    def missing(self) -> str:
        """What the kept calls would add to MLflow, in words."""
        counts = Counter(op["op"] for op in self.pending)
        steps = sorted({m[3] for op in self.pending if op["op"] == "metrics" for m in op["metrics"]})
        n_metrics = sum(len(op["metrics"]) for op in self.pending if op["op"] == "metrics")
        parts = []
        if counts["open_run"]:
            parts.append("the run itself" if self.run_id is None else "reopening the run")
        if counts["params"]:
            parts.append(f"{sum(len(op['params']) for op in self.pending if op['op'] == 'params')} params")
        if counts["tags"]:
            parts.append(f"{sum(len(op['tags']) for op in self.pending if op['op'] == 'tags')} tags")
        if n_metrics:
            parts.append(f"{n_metrics} metric values (steps {steps[0]}-{steps[-1]})")
        if counts["image"]:
            parts.append(f"{counts['image']} sample grid(s)")
        if counts["artifacts"]:
            parts.append("the generator files")
        ends = [op["status"] for op in self.pending if op["op"] == "end"]
        if ends:
            parts.append(f"its end status ({ends[-1]})")
        return ", ".join(parts)


def sync_journals(parent: str | os.PathLike[str], say: Callable[[str], None] = _print,
                  on_sent: Callable[[Path, Tracker], None] | None = None) -> bool:
    """Send the calls kept under ``parent``/mlflow-pending (``productgan sync-run``); ``on_sent(folder, tracker)``
    after a journal is sent in full. Returns True when nothing is kept there any more. Run it while no step uses
    that folder."""
    journals = pending_journals(parent)
    if not journals:
        say(f"sync-run: no MLflow calls are kept in {Path(parent) / PENDING_DIR}; nothing to send")
    complete = True
    for folder in journals:
        tracker = Tracker(pending_root=folder.parent, say=lambda m: say(f"sync-run: {m}"))
        tracker.connect(folder.name)
        missing = tracker.close()
        if missing is not None:
            complete = False
            say(redact(f"sync-run: {folder}: MLflow at {tracker.tracking_uri} still lacks {missing}; "
                       "run this again when it answers"))
            continue
        say(f"sync-run: run {tracker.run_id} is complete in MLflow ({tracker.tracking_uri})")
        if on_sent is not None:
            on_sent(folder, tracker)
    return complete
