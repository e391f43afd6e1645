"""Training throughput of two checkouts of this repository, interleaved variant by variant.

    python -m benchmarks.compare_checkouts OLD_DIR NEW_DIR [--rounds 3] [--resolutions 28] [--threads 1]

For a refactor: is the new code as fast as the old? Each variant (recipe x precision x resolution) is measured
by `bench_train throughput`'s own ``trainer_images_per_s`` in a fresh process, first with OLD_DIR's code on
PYTHONPATH, then with NEW_DIR's, round after round, so a shared machine's changing load falls on both alike.
Besides images/s (wall time) it records images per CPU-second of the training loop, which other processes on
the machine disturb far less. Prints one JSON line per measurement and a Markdown table at the end.
Both checkouts use this interpreter (e.g. a git worktree of the old commit: `git worktree add /tmp/old REV`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, os, sys, tempfile, time
from pathlib import Path
import torch
from benchmarks import bench_train as b
from productgan.gan.trainer import Trainer

cpu = []
loop = Trainer._loop
def timed_loop(self, *args):
    t0, w0 = time.process_time(), time.perf_counter()
    try:
        return loop(self, *args)
    finally:
        cpu.append((time.process_time() - t0, time.perf_counter() - w0, self.step))
Trainer._loop = timed_loop

res, recipe, precision, steps, threads = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
x, y = b.fashion_mnist("train")
x, y = x[:4096], y[:4096]
with tempfile.TemporaryDirectory() as tmp:
    data = b.write_prepared(Path(tmp) / "d", b.resize(x, res), y)
    ips = b.trainer_images_per_s(data, recipe, 64, steps, threads, precision=precision)
cpu_s, wall_s, step = cpu[-1]
print(json.dumps({"code": os.environ["PYTHONPATH"], "resolution": res, "recipe": recipe, "precision": precision,
                  "images_per_s": ips, "images_per_cpu_s": step * 64 / cpu_s, "loop_wall_s": wall_s,
                  "loop_cpu_s": cpu_s, "load": os.getloadavg()}))
"""


def measure(checkout: Path, resolution: int, recipe: str, precision: str, steps: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = ["nice", "-n", "10", sys.executable, "-c", CHILD, str(resolution), recipe, precision, str(steps),
           str(threads)]
    out = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict], old: Path) -> str:
    variants: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        side = "old" if Path(r["code"]) == old else "new"
        variants.setdefault((r["resolution"], r["recipe"], r["precision"]), {}).setdefault(side, []).append(r)
    lines = ["| variant | images/s old | images/s new | images per CPU-s old | images per CPU-s new "
             "| median images per CPU-s, new / old |", "|---|---|---|---|---|---|"]
    for (res, recipe, prec), d in variants.items():
        def cells(side: str, key: str, d: dict = d) -> str:
            return ", ".join(f"{x[key]:,.0f}" for x in d.get(side, []))

        ratio = (statistics.median(x["images_per_cpu_s"] for x in d["new"])
                 / statistics.median(x["images_per_cpu_s"] for x in d["old"]))
        lines.append(f"| {recipe} {prec} {res}x{res} | {cells('old', 'images_per_s')} | {cells('new', 'images_per_s')} "
                     f"| {cells('old', 'images_per_cpu_s')} | {cells('new', 'images_per_cpu_s')} | {ratio:.3f} |")
    loads = [r["load"][0] for r in rows]
    lines.append(f"\nLoad average (1 min) at the end of the runs: {min(loads):.1f} to {max(loads):.1f}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[28])
    ap.add_argument("--recipes", nargs="+", default=["baseline", "default"])
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    old, new = args.old.resolve(), args.new.resolve()
    rows = []
    for _ in range(args.rounds):
        for res in args.resolutions:
            for recipe in args.recipes:
                for precision in args.precisions:
                    for checkout in (old, new):
                        rows.append(measure(checkout, res, recipe, precision, args.steps, args.threads))
                        print(json.dumps(rows[-1]), flush=True)
    print(table(rows, old))


if __name__ == "__main__":
    main()
