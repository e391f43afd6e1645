"""MLflow logging for a training run, with quiet fallbacks.

The run is created once and its id stored in every checkpoint, so ``--resume`` continues the same run.
A tracking server that stops answering must not stop training: a failed call prints one warning and
tracking goes on trying at the next call. Tracking URI: ``MLFLOW_TRACKING_URI`` or MLflow's default
(``sqlite:///mlflow.db`` in the working directory).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


class Tracker:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.tracking_uri: str | None = None
        self._warned: set[str] = set()
        self._client: Any = None

    def _warn(self, what: str, exc: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            print(f"train: MLflow {what} failed ({type(exc).__name__}: {exc}); training goes on", file=sys.stderr)

    def start(self, experiment: str, run_id: str | None, run_name: str, tags: dict[str, str]) -> str | None:
        """Continue run ``run_id`` when it exists in this tracking store, else start a new one."""
        if not self.enabled:
            return None
        import mlflow
        from mlflow.tracking import MlflowClient

        self.tracking_uri = mlflow.get_tracking_uri()
        self._client = MlflowClient()
        if run_id is not None:
            try:
                run = self._client.get_run(run_id)
                self._client.update_run(run_id, status="RUNNING")
                self.run_id, self.experiment_id = run_id, run.info.experiment_id
                return run_id
            except Exception as exc:  # the store was reset or another URI is in use
                print(f"train: MLflow run {run_id} not found at {self.tracking_uri} ({exc}); starting a new run",
                      file=sys.stderr)
        exp = self._client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self._client.create_experiment(experiment)
        run = self._client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> None:
        """``self._client.<method>(run_id, ...)``; a no-op without a run, a warning on failure."""
        if self.run_id is None:
            return
        try:
            getattr(self._client, method)(self.run_id, *args, **kwargs)
        except Exception as exc:  # tracking must never stop training
            self._warn(what, exc)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._call("log_params", "log_batch", params=items[i : i + 100])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items() if v is not None]
        self._call("set_tags", "log_batch", tags=items)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        self._call("log_metrics", "log_batch", metrics=items)

    def log_image(self, image_hwc: np.ndarray, key: str, step: int) -> None:
        """An image series (MLflow shows it by step), e.g. the sample grid."""
        image = image_hwc.squeeze(-1) if image_hwc.shape[-1] == 1 else image_hwc
        self._call("log_image", "log_image", image, key=key, step=int(step), synchronous=True)

    def log_artifacts(self, folder: str, artifact_path: str) -> None:
        self._call("log_artifacts", "log_artifacts", folder, artifact_path)

    def end(self, status: str) -> None:
        """status: FINISHED | FAILED | KILLED."""
        self._call("end", "set_terminated", status=status)
