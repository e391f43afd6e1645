"""Kubeflow pipeline timings: compile, and the whole pipeline under kfp.local (tiny configuration), first run
(trains) and second run (retrain-check ends it early). CLI end to end, interpreter start included.

    PYTHONPATH=$PWD python benchmarks/bench_kfp.py [--per-category 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return elapsed, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-category", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "PRODUCTGAN_GIT_COMMIT": "bench" * 8,
               "PRODUCTGAN_CACHE": f"{tmp}/cache"}
        py = [sys.executable, "-m", "productgan"]
        rows = [("compile (IR YAML)", _timed([*py, "pipeline", "compile", "--out", f"{tmp}/p.yaml"], env)[0])]
        local = [*py, "pipeline", "run-local", "--workdir", f"{tmp}/work", "--per-category", str(args.per_category)]
        first, out1 = _timed(local, env)
        second, out2 = _timed(local, env)
        assert "trained, evaluated and registered" in out1 and "ended early" in out2, (out1, out2)
        rows += [(f"run-local, first run ({10 * args.per_category} photos): all 6 tasks", first),
                 ("run-local, second run: ingest + retrain-check, ends early", second)]
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print("| what | wall s |\n|---|---|")
    for what, seconds in rows:
        print(f"| {what} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
