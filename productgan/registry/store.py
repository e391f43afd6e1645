"""Which tracking store the registry talks to, and a safe first use of a fresh SQLite store.

The URI is MLflow's own choice: ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db`` in the
working directory. Two processes that open a *fresh* SQLite file at once race on the schema migration
(alembic: "expected to match one row"); ``ensure_store`` creates the schema under an exclusive file lock
beside the database, once per process, so any number of processes may start together. A tracking server
(``http(s)://``) is asked once whether it answers at all, with a short timeout and one retry, so a server
that is down is reported in seconds and before anything is written (MLflow's own retries take minutes).
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

_READY: set[str] = set()
PROBE_TIMEOUT_S = 10


class TrackingUnavailable(RuntimeError):
    """The tracking server does not answer; the message names it (redacted) and what to do."""


def tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file behind a ``sqlite:///`` URI (None for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def ensure_store(uri: str | None = None) -> str:
    """Make the tracking and registry schema exist (SQLite: created once, under a file lock). Returns the URI."""
    uri = uri or tracking_uri()
    if uri in _READY:
        return uri
    if uri.startswith(("http://", "https://")):
        require_server(uri)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{db}.init-lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                _touch_schema(uri)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _READY.add(uri)
    return uri


def require_server(uri: str, timeout_s: float = PROBE_TIMEOUT_S, retries: int = 1) -> None:
    """Raise TrackingUnavailable unless the tracking server at ``uri`` answers (any HTTP status counts:
    a 401 or 404 comes from a live server and is reported by the call that meets it)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    from productgan.redact import redact

    try:
        http_request(get_default_host_creds(uri), "/health", "GET", max_retries=retries, backoff_factor=1,
                     timeout=timeout_s, raise_on_status=False)
    except Exception as exc:  # MlflowException wrapping a requests error: refused, timed out, DNS
        raise TrackingUnavailable(redact(
            f"the MLflow tracking server {uri} does not answer ({unreachable_reason(exc, timeout_s)}); nothing was "
            "written to it. Start the server (or fix MLFLOW_TRACKING_URI) and run the step again."
        )) from exc


def unreachable_reason(exc: BaseException, timeout_s: float | None = None) -> str:
    """Why a call to a store failed, in a few words (connection refused, no answer in N s, ...)."""
    text = str(exc)
    reasons = (
        ("Connection refused", "connection refused"),
        ("timed out", f"no answer in {timeout_s:g} s" if timeout_s else "no answer in time"),
        ("timeout", f"no answer in {timeout_s:g} s" if timeout_s else "no answer in time"),
        ("too many 5", "server errors (5xx)"), ("Connection aborted", "connection dropped"),
        ("RemoteDisconnected", "connection dropped"),
        ("Failed to resolve", "host name not found"), ("Name or service not known", "host name not found"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
    )
    for needle, why in reasons:
        if needle.lower() in text.lower():
            return why
    return type(exc).__name__


def _touch_schema(uri: str) -> None:
    # Opening both stores runs the migrations and creates the default experiment; MLflow caches the stores
    # per URI, so later calls in this process reuse them.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)


def client() -> Any:
    """An MlflowClient for MLflow's current tracking and registry stores (made ready first)."""
    import mlflow
    from mlflow import MlflowClient

    ensure_store(mlflow.get_tracking_uri())
    ensure_store(mlflow.get_registry_uri())
    return MlflowClient()
