"""A server process on this machine: a free loopback port for it, waiting until it answers, stopping it.

One place for what the tracking server of the container pipeline, the test suite's servers (mlflow, the
studio, `mlflow models serve`, the served container) and the benchmarks all do the same way."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answers(
    url: str,
    what: str,
    timeout_s: float,
    running: Callable[[], bool],
    log: Callable[[], str] = str,
    error: type[Exception] = RuntimeError,
    interval_s: float = 0.3,
) -> None:
    """Poll ``url`` until it answers 200. ``error`` naming ``what`` with the end of its ``log()`` when
    ``running()`` turns false first (the server exited) or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not running():
            raise error(f"{what} exited before it answered {url}:\n{log()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        if time.monotonic() > deadline:
            raise error(f"{what} did not answer {url} within {timeout_s:.0f} s:\n{log()[-3000:]}")
        time.sleep(interval_s)


def stop_process_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM to the process group ``proc`` leads (started with ``start_new_session=True``: a server's
    workers too), SIGKILL when it outlives ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):  # the group may end between the check and the signal
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
