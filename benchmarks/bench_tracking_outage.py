"""What a tracking-server outage costs training, per call: the first call that fails, the calls kept after it,
and one `/health` probe, against a port that refuses connections and a socket that accepts and never answers.

    python benchmarks/bench_tracking_outage.py [--calls 100]

Runs train's tracker (productgan.tracking) with MLflow's HTTP settings as train sets them (no
MLFLOW_HTTP_* of the environment); the kept calls go to a temp folder, removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from productgan.tracking import Tracker  # noqa: E402


@contextlib.contextmanager
def refused() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"http://127.0.0.1:{port}"  # nothing listens there any more


@contextlib.contextmanager
def silent() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def measure(uri: str, calls: int) -> dict[str, float]:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    folder = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    try:
        tracker = Tracker(pending_root=folder, say=lambda _m: None)
        t0 = time.perf_counter()
        tracker.start("bench", None, "bench", {})
        t1 = time.perf_counter()
        for step in range(calls):
            tracker.log_metrics({"loss_d": 1.0, "loss_g": 2.0}, step)
        t2 = time.perf_counter()
        tracker._retry(force=True)  # one probe of the server, as every RETRY_EVERY_S during an outage
        t3 = time.perf_counter()
        return {"first": t1 - t0, "later": (t2 - t1) / calls, "probe": t3 - t2, "kept": len(tracker.pending)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    import mlflow  # noqa: F401 - imported before timing: its import is not the outage's cost

    print("| server | first call | each later call (kept) | one /health probe | calls kept |")
    print("|---|---|---|---|---|")
    for name, server in (("refuses connections", refused), ("accepts, never answers", silent)):
        with server() as uri:
            r = measure(uri, args.calls)
        print(f"| {name} | {r['first']:.2f} s | {r['later'] * 1000:.1f} ms | {r['probe']:.3f} s | {r['kept']:.0f} |")


if __name__ == "__main__":
    main()
