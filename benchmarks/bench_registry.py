"""Registry timings on the embedded store (SQLite + local artifacts), with a fake scorer (the evaluation
library's own cost is measured by bench_evaluate): one registration end to end (log the pyfunc model, register,
take the promotion lock twice, decide), and promotion-lock round trips.

    PYTHONPATH=. python benchmarks/bench_registry.py [--n 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5, help="registrations and lock round trips to time")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    from registry_helpers import fake_scorer, make_candidate

    from productgan.registry import store
    from productgan.registry.config import RegisterConfig
    from productgan.registry.lock import PromotionLock
    from productgan.registry.register import register_generator

    t = time.perf_counter()
    store.ensure_store()
    init_s = time.perf_counter() - t
    (work / "prepared").mkdir()
    reg = []
    for i in range(args.n):
        gen, metrics = make_candidate(work / f"c{i}", {"fd_domain": 10.0 - i, "class_accuracy": 0.8}, seed=i)
        t = time.perf_counter()
        register_generator(gen, metrics, data_dir=work / "prepared", cfg=RegisterConfig(), scorer=fake_scorer)
        reg.append(time.perf_counter() - t)
    client = store.client()
    locks = []
    for _ in range(args.n * 4):
        t = time.perf_counter()
        with PromotionLock(client, "product-gan"):
            pass
        locks.append(time.perf_counter() - t)
    print("| what | median | min | n |\n|---|---|---|---|")
    print(f"| fresh SQLite store: first open, incl. MLflow store imports + migrations | {init_s:.2f} s | | 1 |")
    print(f"| register + promote one version (fake scorer) | {statistics.median(reg):.2f} s | {min(reg):.2f} s "
          f"| {len(reg)} |")
    print(f"| promotion lock acquire + release, uncontended | {statistics.median(locks) * 1000:.0f} ms | "
          f"{min(locks) * 1000:.0f} ms | {len(locks)} |")


if __name__ == "__main__":
    main()
