"""The article's GAN against what we ship, at equal CPU time (benchmarks/RESULTS.md, "The article's GAN").

  python -m benchmarks.bench_article throughput [--rounds 3]   # steps per CPU-second of each variant
  python -m benchmarks.bench_article train --minutes 5 [--seeds 0 1] [--parallel 4]
  python -m benchmarks.bench_article floor [--fid-n 500]       # real images scored as if generated
  python -m benchmarks.bench_article score [--fid-n 500]       # the evaluate step + Inception fid
  python -m benchmarks.bench_article report                    # the Markdown table and the sample grids

Why steps and not minutes: the machine is 2 cores shared by several engineers (load average 8-15), so a
wall-clock budget measures the neighbours. Each variant's training speed is measured instead as optimisation
steps per CPU-second of the training loop (``time.process_time``), each variant in a fresh process, the
variants interleaved round after round (as ``benchmarks/compare_checkouts.py`` does). "N minutes of 2 quiet
cores" is then converted to a step budget per variant: ``default`` runs ~11,400 steps in 10 minutes on the
quiet machine (1,269 images/s at batch 64, 2 threads, bf16: RESULTS.md "make run as shipped"), and every other
variant gets ``11,400 x N / 10 x (its steps per CPU-s / default's)``. Runs then train by ``--steps`` (one
thread each), so the load changes how long they take, not how far they get.

Results: benchmarks/results/article_*.json, grids benchmarks/results/article_<variant>_s<seed>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.results_file import RESULTS_DIR, save_result

REPO = Path(__file__).resolve().parents[1]
WORKDIR = Path(os.environ.get("PRODUCTGAN_BENCH_WORKDIR", REPO / ".cache" / "bench_article"))
VARIANTS = ("article", "article_wgan_gp", "baseline", "default")
QUIET_DEFAULT_STEPS_PER_10_MIN = 11_400  # RESULTS.md "`make run` as shipped": default, 2 quiet cores, bf16

THROUGHPUT_CHILD = """
import json, os, sys, tempfile, time
from pathlib import Path
import torch
from benchmarks import bench_train as b
from productgan.gan.trainer import Trainer

cpu = []
loop = Trainer._loop
def timed_loop(self, *args):
    t0 = time.process_time()
    try:
        return loop(self, *args)
    finally:
        cpu.append((time.process_time() - t0, self.step))
Trainer._loop = timed_loop

recipe, steps = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
x, y = b.fashion_mnist("train")
with tempfile.TemporaryDirectory() as tmp:
    data = b.write_prepared(Path(tmp) / "d", x[:4096], y[:4096])
    b.trainer_images_per_s(data, recipe, 64, steps, 1, precision="bf16")
cpu_s, step = cpu[-1]
print(json.dumps({"recipe": recipe, "steps": step, "loop_cpu_s": cpu_s, "steps_per_cpu_s": step / cpu_s,
                  "load": os.getloadavg()}))
"""


def save(name: str, doc: dict[str, Any]) -> Path:
    return save_result("article", name, doc)


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS_DIR / f"article_{name}.json").read_text())


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def cmd_throughput(args: argparse.Namespace) -> None:
    rows = []
    for rnd in range(args.rounds):
        for recipe in args.variants:
            cmd = ["nice", "-n", "10", sys.executable, "-c", THROUGHPUT_CHILD, recipe, str(args.steps)]
            out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, check=True)
            rows.append({"round": rnd, **json.loads(out.stdout.strip().splitlines()[-1])})
            print(json.dumps(rows[-1]), flush=True)
    median = {v: statistics.median(r["steps_per_cpu_s"] for r in rows if r["recipe"] == v) for v in args.variants}
    save("throughput", {"rows": rows, "median_steps_per_cpu_s": median, "threads": 1, "batch": 64,
                        "precision": "bf16", "images": 4096})


def step_budget(minutes: float) -> dict[str, int]:
    """Steps per variant worth ``minutes`` of the quiet machine, from the measured steps per CPU-second."""
    median = load("throughput")["median_steps_per_cpu_s"]
    default_steps = QUIET_DEFAULT_STEPS_PER_10_MIN * minutes / 10.0
    return {v: int(round(default_steps * median[v] / median["default"], -1)) for v in median}


TRAIN_CHILD = """
import json, sys, time
from productgan.gan.recipes import TrainParams
from productgan.gan.trainer import Trainer
spec = json.loads(sys.argv[1])
out = spec["out"]
p = TrainParams.of_recipe(spec["recipe"], steps=spec["steps"], max_minutes=None, num_threads=1, seed=spec["seed"],
                          checkpoint_dir=out + "/ckpt", metrics_file=out + "/metrics.json",
                          plots_file=out + "/plots.csv", log_every=100, sample_every=10**9, checkpoint_every=1000,
                          keep_checkpoints=1)
t0, c0 = time.time(), time.process_time()
res = Trainer(p, spec["data"], out + "/generator", track=False, resume=spec["resume"]).run()
json.dump({"status": res.status, "step": res.step, "wall_s": time.time() - t0,
           "cpu_s": time.process_time() - c0, **res.metrics}, open(out + "/child.json", "w"))
"""


def prepared() -> Path:
    """The full Fashion-MNIST: 60,000 train images for training, the 10,000 test images for scoring."""
    from benchmarks.bench_train import fashion_mnist, write_prepared

    data = WORKDIR / "prepared"
    if not (data / "manifest.json").is_file():
        x, y = fashion_mnist("train")
        write_prepared(data, x, y, test=fashion_mnist("test"))
    return data


def cmd_train(args: argparse.Namespace) -> None:
    budget = step_budget(args.minutes)
    data = prepared()
    script = WORKDIR / "train_child.py"
    script.write_text(TRAIN_CHILD)
    todo = [(v, s) for s in args.seeds for v in args.variants]
    running: list[tuple[str, int, subprocess.Popen]] = []
    rows = []
    while todo or running:
        while todo and len(running) < args.parallel:
            v, s = todo.pop(0)
            out = WORKDIR / f"{v}_s{s}"
            out.mkdir(parents=True, exist_ok=True)
            # A run stopped part-way (session end, SIGTERM) continues exactly from its checkpoint.
            resume = any((out / "ckpt").glob("ckpt-*.pt"))
            spec = {"recipe": v, "steps": budget[v], "seed": s, "data": str(data), "out": str(out), "resume": resume}
            log = open(out / "log.txt", "w")  # noqa: SIM115 (the child holds it)
            proc = subprocess.Popen(["nice", "-n", "10", sys.executable, str(script), json.dumps(spec)],
                                    env=_env(), stdout=log, stderr=subprocess.STDOUT)
            running.append((v, s, proc))
        time.sleep(5)
        for item in list(running):
            v, s, proc = item
            if proc.poll() is not None:
                running.remove(item)
                child = json.loads((WORKDIR / f"{v}_s{s}" / "child.json").read_text())
                rows.append({"variant": v, "seed": s, **child})
                print(json.dumps(rows[-1]), flush=True)
    save(f"train_{args.minutes:g}min", {"minutes": args.minutes, "budget_steps": budget, "rows": rows})


KEEP = ("fd_domain", "kid", "kid_std", "precision", "recall", "class_accuracy", "diversity_ratio_min",
        "mode_collapse")


def _score(sample_fn: Any, data: Path, fid_n: int) -> dict[str, Any]:
    """The evaluate step's domain metrics (10,000 samples against the 10,000 test images), then Inception
    ``fid`` at ``fid_n`` samples a side at the evaluate step's Inception precision (``auto``: bf16 on these
    CPUs, checked against fp32)."""
    from productgan.metrics.evaluate import EvaluateParams, evaluate_samples

    domain = [m for m in EvaluateParams().metrics if not m.startswith("fid")]
    c0 = time.process_time()
    result = evaluate_samples(sample_fn, data, EvaluateParams(metrics=domain), cache_dir=WORKDIR / "cache",
                              device="cpu")
    row = {k: result.get(k) for k in KEEP}
    row["domain_cpu_s"] = time.process_time() - c0
    if fid_n:
        c0 = time.process_time()
        fid = evaluate_samples(sample_fn, data, EvaluateParams(metrics=["fid"], fid_n=fid_n),
                               cache_dir=WORKDIR / "cache", device="cpu")
        from productgan.metrics.catalog import fid_name

        row.update(fid=fid[fid_name(fid_n)], fid_meta=fid["fid_meta"], fid_cpu_s=time.process_time() - c0)
    return row


def cmd_floor(args: argparse.Namespace) -> None:
    """The same scores for real train images in place of generated ones (of the asked categories): the best
    a generator can get at these sample counts. Also trains and caches the domain classifier and the real
    test-split statistics that every generator's score then reuses."""
    import numpy as np

    from productgan.data.arrays import load_split

    data = prepared()
    x, y = load_split(data, "train")
    by_label = {c: np.flatnonzero(y == c) for c in range(10)}

    def real_sample(labels: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.stack([x[rng.choice(by_label[int(c)])] for c in labels])

    row = {"variant": "real train images", **_score(real_sample, data, args.fid_n)}
    print(json.dumps(row), flush=True)
    save("floor", {"fid_n": args.fid_n, "rows": [row]})


def cmd_score(args: argparse.Namespace) -> None:
    """Scores and the sample grid of every trained run."""
    import numpy as np

    from productgan.gan.export import load_generator
    from productgan.gan.sample import category_grid, save_png
    from productgan.metrics.evaluate import generator_sample_fn

    data = prepared()
    rows = []
    for s in args.seeds:
        for v in args.variants:
            folder = WORKDIR / f"{v}_s{s}" / "generator"
            G, cfg = load_generator(folder)
            row = {"variant": v, "seed": s, **_score(generator_sample_fn(G, cfg.latent_dim), data, args.fid_n)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            grid = category_grid(G, len(cfg.categories), 8, 2024, cfg.latent_dim)
            save_png(np.ascontiguousarray(grid), RESULTS_DIR / f"article_{v}_s{s}.png")
    save(f"scores{args.save_suffix}", {"fid_n": args.fid_n, "rows": rows})


def cmd_report(_args: argparse.Namespace) -> None:
    """Markdown tables for RESULTS.md: throughput and step budgets, then the scores side by side."""
    tp = load("throughput")
    median = tp["median_steps_per_cpu_s"]
    print("| variant | steps per CPU-second (3 rounds) | median | / default | steps for 1 quiet minute |")
    print("|---|---|---|---|---|")
    budget = step_budget(1.0)
    for v in VARIANTS:
        runs = ", ".join(f"{r['steps_per_cpu_s']:.2f}" for r in tp["rows"] if r["recipe"] == v)
        print(f"| `{v}` | {runs} | {median[v]:.2f} | {median[v] / median['default']:.2f} | {budget[v]:,} |")
    print()
    trains = {}
    for path in sorted(RESULTS_DIR.glob("article_train_*min.json")):
        doc = json.loads(path.read_text())
        trains.update({(r["variant"], r["seed"]): r for r in doc["rows"]})
    rows = [r for path in sorted(RESULTS_DIR.glob("article_scores*.json"))
            for r in json.loads(path.read_text())["rows"]]
    rows.sort(key=lambda r: (VARIANTS.index(r["variant"]), r["seed"]))
    floor = load("floor")["rows"][0] if (RESULTS_DIR / "article_floor.json").is_file() else None
    print("| run | seed | steps | train CPU min | fd_domain | KID | precision | recall | class accuracy "
          "| min diversity | fid (500 a side) | grid |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for v in VARIANTS:
        for r in [r for r in rows if r["variant"] == v]:
            tr = trains.get((v, r["seed"]), {})
            fid = f"{r['fid']:.1f}" if r.get("fid") is not None else "—"
            print(f"| `{v}` | {r['seed']} | {tr.get('step', 0):,} | {tr.get('cpu_s', 0) / 60:.1f} | "
                  f"{r['fd_domain']:.2f} | {r['kid']:.4f} | {r['precision']:.2f} | {r['recall']:.2f} | "
                  f"{r['class_accuracy']:.3f} | {r['diversity_ratio_min']:.2f} | {fid} | "
                  f"[grid](results/article_{v}_s{r['seed']}.png) |")
    if floor:
        fid = f"{floor['fid']:.1f}" if floor.get("fid") is not None else "—"
        print(f"| real train images | — | — | — | {floor['fd_domain']:.2f} | {floor['kid']:.4f} | "
              f"{floor['precision']:.2f} | {floor['recall']:.2f} | {floor['class_accuracy']:.3f} | "
              f"{floor['diversity_ratio_min']:.2f} | {fid} | — |")
    print()
    print("| variant | seeds | fd_domain mean (each) | KID mean | recall mean | fid (500) mean (each) |")
    print("|---|---|---|---|---|---|")
    for v in VARIANTS:
        runs = [r for r in rows if r["variant"] == v]
        if runs:
            each = ", ".join(f"{r['fd_domain']:.2f}" for r in runs)
            fids = [r["fid"] for r in runs if r.get("fid") is not None]
            fid = f"{statistics.mean(fids):.1f} ({', '.join(f'{f:.1f}' for f in fids)})" if fids else "—"
            print(f"| `{v}` | {len(runs)} | {statistics.mean(r['fd_domain'] for r in runs):.2f} ({each}) | "
                  f"{statistics.mean(r['kid'] for r in runs):.4f} | {statistics.mean(r['recall'] for r in runs):.2f} | "
                  f"{fid} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--steps", type=int, default=60)
    t.add_argument("--variants", nargs="+", default=list(VARIANTS))
    tr = sub.add_parser("train")
    tr.add_argument("--minutes", type=float, default=5.0, help="minutes of 2 quiet cores, as steps per variant")
    tr.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    tr.add_argument("--variants", nargs="+", default=list(VARIANTS))
    tr.add_argument("--parallel", type=int, default=4)
    sc = sub.add_parser("score")
    sc.add_argument("--fid-n", type=int, default=500)
    sc.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    sc.add_argument("--variants", nargs="+", default=list(VARIANTS))
    sc.add_argument("--save-suffix", default="")
    fl = sub.add_parser("floor")
    fl.add_argument("--fid-n", type=int, default=500)
    sub.add_parser("report")
    args = ap.parse_args()
    commands = {"throughput": cmd_throughput, "train": cmd_train, "score": cmd_score, "floor": cmd_floor,
                "report": cmd_report}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
