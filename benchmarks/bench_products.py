"""Colour product photos: the CLI end to end (ingest -> preprocess -> train -> evaluate) per recipe and seed.

  python -m benchmarks.bench_products prepare --photos DIR --name NAME [--clusters K]
  python -m benchmarks.bench_products throughput --name NAME [--recipes R ... | --variants JSON] [--rounds 3]
  python -m benchmarks.bench_products run --name NAME --minutes 30 [--recipes R ... | --variants JSON] [--seeds 0 1]
  python -m benchmarks.bench_products floor --name NAME      # held-out real photos scored as if generated
  python -m benchmarks.bench_products all --set white=DIR --set clothing=DIR [--minutes 30] [--seeds 0 1]
  python -m benchmarks.bench_products gpu --name NAME --photos DIR --minutes 10 [--resolution 128]  # CUDA
  python -m benchmarks.bench_products report       # RESULTS.md "Colour product photos" from the JSON files

``prepare`` turns a folder of photos into the layout `productgan ingest` reads (one subfolder per category) and
runs `productgan ingest` and `productgan preprocess` (64 px RGB, background auto) on it:
- a folder of category subfolders is taken as it is; one holding split folders first
  (``train/``, ``validation/``, ``test/``, as alexeygrigorev/clothing-dataset-small) is merged per category;
- a flat folder of photos (no categories, as GaneshNeupane01/Fashion-Recommendation-System's ``images/``)
  is split into ``--clusters`` categories by k-means on 16x16 grey thumbnails (the silhouette: shirts on
  people, shoes, bags, watches fall apart), so the evaluate step's class accuracy and domain features mean
  something. The clusters are written as ``cluster-<i>`` folders of hard links (ingest refuses symbolic
  links; a copy where the photos lie on another file system), largest cluster first; the assignment is
  saved in the work folder.

``throughput`` measures each recipe's images per CPU-second of the training loop (the method of
``benchmarks/compare_checkouts.py``: each measurement in a fresh process, recipes interleaved round after
round, the median), which the machine's other work disturbs far less than wall time. It measures at one thread:
on a 2-core machine loaded 3x over, two OpenMP threads burn their CPU-seconds waiting for each other (default
measured 26 images per CPU-second at 2 threads there, 140 at one). ``run`` turns "N minutes of 2 cores" into a
step count per recipe from it (N x 60 s x 2 cores x images per CPU-second / batch: perfect scaling over the two
cores, the same assumption for every recipe, so an upper bound on the steps a real 2-core run reaches) and
trains each recipe and seed by `productgan train --steps` (no clock), then `productgan evaluate`: so a loaded
machine changes how long a run takes, not how far it gets. Every command writes
benchmarks/results/products_<name>_<command>.json; `run` also copies each generator's grid there.

The photos are never copied into the repository; the work folder is .cache/bench_products/<name>/ (or
$PRODUCTGAN_BENCH_WORKDIR/<name>).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.results_file import RESULTS_DIR, command, replace_section, save_result

REPO = Path(__file__).resolve().parents[1]
WORK_ROOT = Path(os.environ.get("PRODUCTGAN_BENCH_WORKDIR", REPO / ".cache" / "bench_products"))
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
SPLIT_FOLDERS = ("train", "validation", "val", "test")
CORES = 2  # "N minutes of 2 cores": the machine the targets are stated for
MEASURE_THREADS = 1  # throughput is measured per CPU-second at one thread (see the module docstring)
RESOLUTION = 64


# the evaluate step's scores each result keeps: Inception FID at 2,000 a side (a CPU's count; ``fid10k`` where a GPU
# scored 10,000), FID∞, the domain metrics, class accuracy
SCORE_KEYS = ("fid2k", "fid10k", "fid_inf", "fd_domain", "kid", "precision", "recall", "class_accuracy")


def scores(metrics: dict[str, Any], keys: tuple[str, ...] = SCORE_KEYS) -> dict[str, Any]:
    """``keys`` of an evaluate step's metrics.json that it holds."""
    return {k: metrics[k] for k in keys if k in metrics}


def workdir(name: str) -> Path:
    return WORK_ROOT / name


def cli(*args: str, params: Path, cwd: Path, log: Path | None = None, threads: int | None = None) -> None:
    """`productgan --params PARAMS ARGS` in a fresh process from this checkout; stops with its output on failure."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "productgan", "--params", str(params), *args]
    print("$ productgan " + " ".join(args), flush=True)
    with open(log, "a") if log else open(os.devnull, "w") as out:  # noqa: SIM115
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out if log else None, stderr=subprocess.STDOUT if log
                              else None)
    if proc.returncode:
        sys.exit(f"productgan {' '.join(args)} failed (exit {proc.returncode})" + (f"; see {log}" if log else ""))


def write_params(path: Path, **sections: dict[str, Any]) -> Path:
    """The repository's params.yaml with ``sections`` merged in (one level deep)."""
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(doc[section].get(key), dict):
                doc[section][key] = {**doc[section][key], **value}
            else:
                doc[section][key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------- prepare


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def thumbnails(paths: list[Path], size: int = 16) -> np.ndarray:
    """Grey ``size`` x ``size`` thumbnails, each standardised (the silhouette, not the colour or exposure)."""
    from PIL import Image

    out = np.empty((len(paths), size * size), np.float32)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            im.draft("L", (size * 4, size * 4))  # JPEG: decode at a fraction of the size
            out[i] = np.asarray(im.convert("L").resize((size, size), Image.Resampling.BOX), np.float32).ravel()
    out -= out.mean(1, keepdims=True)
    out /= out.std(1, keepdims=True) + 1e-6
    return out


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """Cluster labels of the rows of ``x`` (k-means++ start, Lloyd's iterations), relabelled by size, largest 0."""
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(x[rng.choice(len(x), p=d / d.sum())])
    c = np.stack(centres)
    labels = np.zeros(len(x), np.int64)
    for _ in range(iterations):
        d = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None]
        new = d.argmin(1)
        if np.array_equal(new, labels) and _:
            break
        labels = new
        c = np.stack([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    return np.argsort(order)[labels]


def category_folder(photos: Path, out: Path, clusters: int) -> dict[str, Any]:
    """``out`` laid out as ingest reads it (one subfolder per category); what was done, for the record."""
    if out.exists():
        shutil.rmtree(out)
    # hidden folders are not categories (a repository snapshot's .git; ingest skips them too)
    subdirs = sorted(d for d in photos.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_layout = subdirs and all(d.name in SPLIT_FOLDERS for d in subdirs)
    if split_layout:  # <split>/<category>/*.jpg -> <category>/<split>-*.jpg
        n = 0
        for split in subdirs:
            for category in sorted(d for d in split.iterdir() if d.is_dir()):
                for p in photos_in(category):
                    flat = p.relative_to(category).as_posix().replace("/", "-")
                    link(p, out / category.name / f"{split.name}-{flat}")
                    n += 1
        return {"layout": "split folders merged per category", "photos": n}
    if subdirs:
        for category in subdirs:
            for p in photos_in(category):
                link(p, out / category.name / p.relative_to(category))
        return {"layout": "category folders", "photos": len(photos_in(photos))}
    paths = photos_in(photos)
    t0 = time.time()
    labels = kmeans(thumbnails(paths), clusters)
    for p, c in zip(paths, labels, strict=True):
        link(p, out / f"cluster-{c}" / p.name)
    sizes = np.bincount(labels, minlength=clusters).tolist()
    print(f"k-means: {clusters} clusters of sizes {sizes} ({time.time() - t0:.0f} s)", flush=True)
    return {"layout": f"flat: k-means on 16x16 grey thumbnails, k={clusters}, seed 0", "photos": len(paths),
            "cluster_sizes": sizes, "assignment": {p.name: int(c) for p, c in zip(paths, labels, strict=True)}}


def cmd_prepare(args: argparse.Namespace) -> None:
    work = workdir(args.name)
    work.mkdir(parents=True, exist_ok=True)
    layout = category_folder(Path(args.photos).resolve(), work / "photos", args.clusters)
    (work / "layout.json").write_text(json.dumps(layout, indent=1) + "\n")
    params = write_params(work / "params.yaml", preprocess={"resolution": RESOLUTION, "channels": 3,
                                                            "background": "auto"})
    for folder in ("data", "prepared"):
        if (work / folder).exists():
            shutil.rmtree(work / folder)
    t0 = time.time()
    cli("ingest", "--source", str(work / "photos"), "--out", str(work / "data"), "--name", args.name,
        params=params, cwd=work, log=work / "prepare.log")
    cli("preprocess", "--input", str(work / "data"), "--out", str(work / "prepared"), params=params, cwd=work,
        log=work / "prepare.log")
    manifest = json.loads((work / "prepared" / "manifest.json").read_text())
    doc = {"photos": args.photos, "name": args.name, "layout": {k: v for k, v in layout.items() if k != "assignment"},
           "categories": manifest["categories"], "counts": manifest["counts"], "seconds": round(time.time() - t0)}
    print(json.dumps(doc, indent=1))
    save_result("products", f"{args.name}_prepare", doc)



# --------------------------------------------------------------------------------------- throughput

THROUGHPUT_CHILD = """
import json, os, sys, tempfile, time
import torch
from productgan.gan.recipes import TrainParams
from productgan.gan.trainer import Trainer

spec = json.loads(sys.argv[1])
cpu = []
loop = Trainer._loop
def timed_loop(self, *args):
    t0, w0, s0 = time.process_time(), time.perf_counter(), self.step
    try:
        return loop(self, *args)
    finally:
        cpu.append((time.process_time() - t0, time.perf_counter() - w0, self.step - s0))
Trainer._loop = timed_loop
torch.set_num_threads(spec["threads"])
with tempfile.TemporaryDirectory() as tmp:
    p = TrainParams.of_recipe(spec["recipe"], **{
        "steps": spec["steps"], "max_minutes": None, "batch_size": spec["batch"], "num_threads": spec["threads"],
        "precision": spec["precision"], "log_every": 10**9, "sample_every": 10**9, "checkpoint_every": 10**9,
        "checkpoint_dir": tmp + "/c", "metrics_file": tmp + "/m.json", "plots_file": tmp + "/p.csv",
        **spec["recipe_params"]})
    trainer = Trainer(p, spec["data"], tmp + "/out", track=False)
    trainer.run()
cpu_s, wall_s, steps = cpu[-1]
print(json.dumps({"images_per_cpu_s": steps * spec["batch"] / cpu_s, "images_per_s": steps * spec["batch"] / wall_s,
                  "loop_cpu_s": cpu_s, "loop_wall_s": wall_s, "steps": steps, "precision": trainer.precision_name,
                  "load": os.getloadavg()}))
"""


# What the table in benchmarks/RESULTS.md "Colour product photos" compares (the default of throughput, run and all):
# `default` with DiffAugment's grey fill, and with each photo's border colour as the fill (same networks, same speed)
VARIANTS: list[dict[str, Any]] = [
    {"name": "default", "recipe": "default", "recipe_params": {"augment_fill": "grey"}},
    {"name": "default_border", "recipe": "default", "recipe_params": {"augment_fill": "border"},
     "throughput_as": "default"},
]


def variants_from(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--variants`` JSON ({"name", "recipe", "recipe_params"?, "throughput_as"?: a variant whose measured speed
    this one shares, e.g. another augmentation on the same networks}), one variant per ``--recipes`` name, or
    VARIANTS."""
    if args.variants:
        return [{"recipe_params": {}, **v} for v in args.variants]
    if args.recipes:
        return [{"name": r, "recipe": r, "recipe_params": {}} for r in args.recipes]
    return VARIANTS


def default_precision() -> str:
    """bf16 autocast where the CPU has native bf16 (faster for both recipes at 64 px there), else fp32. Pinned for
    throughput and runs alike: ``precision: auto`` measures at each start, and on a loaded machine it has picked
    the slower one."""
    from productgan.device import cpu_has_native_bf16

    return "bf16" if cpu_has_native_bf16() else "fp32"


def measure_throughput(data: Path, variant: dict[str, Any], steps: int, batch: int, threads: int,
                       precision: str) -> dict[str, Any]:
    spec = {"data": str(data), "recipe": variant["recipe"], "recipe_params": variant["recipe_params"],
            "steps": steps, "batch": batch, "threads": threads, "precision": precision}
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", THROUGHPUT_CHILD, json.dumps(spec)], cwd=REPO, env=env,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"throughput of {variant['name']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cmd_throughput(args: argparse.Namespace) -> None:
    data = workdir(args.name) / "prepared"
    name = f"{args.name}_throughput{args.save_suffix}"
    settings = {"threads": args.threads, "batch": args.batch, "precision": args.precision}
    earlier_result(name, settings)
    rows = []
    for rnd in range(args.rounds):  # interleaved: a passing load falls on every variant alike
        for v in variants_from(args):
            row = {"variant": v["name"], "recipe": v["recipe"], "recipe_params": v["recipe_params"], "round": rnd,
                   **measure_throughput(data, v, args.steps, args.batch, args.threads, args.precision)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    doc = with_earlier_rows(name, {"dataset": args.name, "steps": args.steps, "rows": rows}, settings,
                            key=lambda r: r["variant"])
    doc["median_images_per_cpu_s"] = {
        variant: statistics.median(r["images_per_cpu_s"] for r in doc["rows"] if r["variant"] == variant)
        for variant in dict.fromkeys(r["variant"] for r in doc["rows"])}
    save_result("products", name, doc)


def earlier_result(name: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """results/products_<name>.json, whose rows a new measurement joins; None when there is none. One measured
    with other ``settings`` is never mixed in: called before anything is measured, this stops and names the way
    out."""
    path = RESULTS_DIR / f"products_{name}.json"
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    differ = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
    if differ:
        sys.exit(f"{path} holds rows measured with other settings ({differ}, earlier first): pass --save-suffix "
                 "to keep both, or move that file away")
    return old


def with_earlier_rows(name: str, doc: dict[str, Any], settings: dict[str, Any],
                      key: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """``doc`` and ``settings`` with the earlier file's rows whose ``key`` this command did not measure again, so
    that a bench run in parts (a variant, a seed at a time) loses nothing; ``measured_by`` keeps every command that
    measured a row, with its time and load. The file is read again here, not kept from the check before measuring:
    another command may have added rows since."""
    measured_by = [{"when": time.strftime("%Y-%m-%d %H:%M"), "command": command(),
                    "load_average": [round(v, 2) for v in os.getloadavg()]}]
    old = earlier_result(name, settings)
    if old is None:
        return {**doc, **settings, "measured_by": measured_by}
    measured_again = {key(r) for r in doc["rows"]}
    rows = [r for r in old["rows"] if key(r) not in measured_again] + doc["rows"]
    return {**doc, **settings, "rows": rows, "measured_by": old["measured_by"] + measured_by}


# --------------------------------------------------------------------------------------------- run


def step_budget(name: str, minutes: float, variants: list[dict[str, Any]], batch: int) -> dict[str, int]:
    """Steps worth ``minutes`` of ``CORES`` cores per variant, from its measured images per CPU-second."""
    path = RESULTS_DIR / f"products_{name}_throughput.json"
    if not path.is_file():
        sys.exit(f"{path}: missing; run `python -m benchmarks.bench_products throughput --name {name}` first")
    median = json.loads(path.read_text())["median_images_per_cpu_s"]
    measured = {v["name"]: v.get("throughput_as", v["name"]) for v in variants}  # same networks, same speed
    missing = [name for name, as_ in measured.items() if as_ not in median]
    if missing:
        sys.exit(f"{path} has no throughput of {missing}; measure them with `throughput --variants ...`")
    return {name: int(round(minutes * 60 * CORES * median[as_] / batch, -1)) for name, as_ in measured.items()}


def evaluate_settings(work: Path, precision: str) -> dict[str, Any]:
    """The evaluate section of every run and of the floor: one cache per set, and the Inception network in the
    runs' precision (``inception_precision: auto`` measures at each start, and a loaded machine's answer varies:
    each answer would be another extractor with its own real statistics of the whole train split)."""
    return {"cache_dir": str(work / "cache"), "inception_precision": precision}


def trained_steps(run: Path) -> int | None:
    """The steps of the generator a finished `productgan train` exported in ``run``, if any."""
    if not (run / "generator" / "generator.json").is_file() or not (run / "train.json").is_file():
        return None
    return int(json.loads((run / "train.json").read_text())["step"])


caches_ready = threading.Event()
caches_ready.set()


def train_and_evaluate(work: Path, minutes: float, variant: dict[str, Any], seed: int, steps: int, batch: int,
                       precision: str) -> dict[str, Any]:
    """`productgan train --steps` then `productgan evaluate` for one variant and seed; resumes a stopped run."""
    run = work / "runs" / f"{minutes:g}min" / f"{variant['name']}_s{seed}"
    run.mkdir(parents=True, exist_ok=True)
    params = write_params(run / "params.yaml", train={
        "recipe": variant["recipe"], "seed": seed, "steps": steps, "max_minutes": None, "batch_size": batch,
        "num_threads": 1, "precision": precision, "checkpoint_dir": str(run / "ckpt"), "checkpoint_every": 1000,
        "keep_checkpoints": 1,
        "metrics_file": str(run / "train.json"), "plots_file": str(run / "train_loss.csv"), "log_every": 100,
        "sample_every": 10**9, "experiment": f"bench-products-{work.name}", **variant["recipe_params"],
    }, evaluate=evaluate_settings(work, precision))
    eval_dir = run / "eval"
    if not (eval_dir / "metrics.json").is_file():
        c0, train_wall = time.time(), None  # wall time only when this call trained it (the load makes it)
        if trained_steps(run) != steps:  # a finished run is not trained again (not even after a code change)
            cli("train", "--data", str(work / "prepared"), "--out", str(run / "generator"), "--steps", str(steps),
                "--resume", params=params, cwd=run, log=run / "log.txt", threads=1)
            train_wall = time.time() - c0
        caches_ready.wait()  # the floor computes the real side's statistics once for every run
        cli("evaluate", "--generator", str(run / "generator"), "--data", str(work / "prepared"), "--out",
            str(eval_dir), params=params, cwd=run, log=run / "log.txt", threads=1)
        (run / "wall.json").write_text(json.dumps({"train_wall_s": train_wall, "load": os.getloadavg()}))
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    train = json.loads((run / "train.json").read_text())
    grid = RESULTS_DIR / f"products_{work.name}_{minutes:g}min_{variant['name']}_s{seed}.png"
    shutil.copyfile(eval_dir / "grid.png", grid)
    keep = (*SCORE_KEYS, "kid_std", "diversity_ratio_min", "mode_collapse")
    return {"variant": variant["name"], "recipe": variant["recipe"], "recipe_params": variant["recipe_params"],
            "seed": seed, "steps": steps, **scores(metrics, keep),
            "fid_meta": {k: metrics.get("fid_meta", {}).get(k) for k in ("n_generated", "n_real", "real_split",
                                                                         "precision")},
            "eval_meta": {k: metrics["meta"].get(k) for k in ("n_generated", "n_real", "real_split",
                                                              "real_split_asked")},
            "train": {k: train.get(k) for k in ("step", "images_per_s", "train_minutes", "restarts")},
            **json.loads((run / "wall.json").read_text()), "grid": str(grid.relative_to(REPO))}


def cmd_run(args: argparse.Namespace) -> None:
    work = workdir(args.name)
    name = f"{args.name}_run_{args.minutes:g}min{args.save_suffix}"
    settings = {"minutes": args.minutes, "cores": CORES, "batch": args.batch, "precision": args.precision}
    earlier_result(name, settings)
    variants = variants_from(args)
    budget = step_budget(args.throughput or args.name, args.minutes, variants, args.batch)
    print(f"step budgets for {args.minutes:g} minutes of {CORES} cores: {budget}", flush=True)
    jobs = [(v, s) for s in args.seeds for v in variants]
    rows: list[dict[str, Any]] = []
    floor = None
    floor_file, lock = RESULTS_DIR / f"products_{args.name}_floor.json", work / ".floor.lock"
    if not floor_file.is_file():  # the floor warms the caches while the runs train; evaluations wait for it
        caches_ready.clear()
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
        except FileExistsError:  # another `run` is computing it: wait for its result
            def wait_for_floor() -> None:
                while lock.exists() and not floor_file.is_file():
                    time.sleep(30)
                caches_ready.set()

            threading.Thread(target=wait_for_floor, daemon=True).start()
        else:
            env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
            floor = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_products", "floor", "--name",
                                      args.name, "--threads", "1", "--precision", args.precision], cwd=REPO, env=env)
            threading.Thread(target=lambda: (floor.wait(), lock.unlink(), caches_ready.set()), daemon=True).start()
    # one thread per run, ``parallel`` runs at once: the step budget fixes how far each gets, the load only how long
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(train_and_evaluate, work, args.minutes, v, s, budget[v["name"]], args.batch,
                               args.precision)
                   for v, s in jobs]
        for f in futures:
            rows.append(f.result())
            print(json.dumps(rows[-1]), flush=True)
    if floor is not None and floor.returncode:
        sys.exit(f"the floor failed (exit {floor.returncode})")
    doc = with_earlier_rows(name, {"dataset": args.name, "rows": rows}, settings,
                            key=lambda r: (r["variant"], r["seed"]))
    save_result("products", name, doc)



# --------------------------------------------------------------------------------------------- gpu


def cmd_gpu(args: argparse.Namespace) -> None:
    """``--recipe`` (``default``; ``--recipe-params`` JSON overrides) at ``--resolution`` (128 or 256 px) on
    ``--device`` (cuda): bf16 autocast (precision auto on CUDA), torch.compile with ``--compile``, trained for
    ``--minutes`` of wall time (the GPU is the run's alone, so the clock is the budget), then the evaluate step
    (``fid_n`` auto: 10,000 a side on CUDA). Prints images/s and the metrics and saves
    products_<name>_gpu_<recipe>_<resolution>px.json. The photos must have been prepared here (``prepare``, or
    ``--photos``); the prepared set at this resolution is made from them on the first call."""
    work = workdir(args.name)
    if args.photos and not (work / "data" / "manifest.json").is_file():
        cmd_prepare(argparse.Namespace(photos=args.photos, name=args.name, clusters=args.clusters))
    if not (work / "data" / "manifest.json").is_file():
        sys.exit(f"{work / 'data'}: no ingested photos; pass --photos DIR (or run `prepare` first)")
    tag = f"{args.recipe}_{args.resolution}px" + ("_compiled" if args.compile else "")
    run = work / "gpu" / tag
    params = write_params(run / "params.yaml", preprocess={"resolution": args.resolution, "channels": 3,
                                                           "background": "auto"},
                          train={"recipe": args.recipe, "steps": args.steps, "max_minutes": args.minutes,
                                 "batch_size": args.batch, "device": args.device, "precision": "auto",
                                 "compile": args.compile, "checkpoint_dir": str(run / "ckpt"),
                                 "checkpoint_every": 5000, "keep_checkpoints": 1,
                                 "metrics_file": str(run / "train.json"),
                                 "plots_file": str(run / "train_loss.csv"), "log_every": 100, "sample_every": 10**9,
                                 "experiment": f"bench-products-gpu-{args.name}", **args.recipe_params},
                          evaluate={"cache_dir": str(work / "cache"), "device": args.device, "fid_n": args.fid_n,
                                    "n": args.eval_n, **args.eval_params})
    prepared = work / f"prepared{args.resolution}"
    if not (prepared / "manifest.json").is_file():
        cli("preprocess", "--input", str(work / "data"), "--out", str(prepared), params=params, cwd=work,
            log=work / "prepare.log")
    t0 = time.time()
    cli("train", "--data", str(prepared), "--out", str(run / "generator"), params=params, cwd=run,
        log=run / "log.txt")
    train_wall = time.time() - t0
    cli("evaluate", "--generator", str(run / "generator"), "--data", str(prepared), "--out", str(run / "eval"),
        params=params, cwd=run, log=run / "log.txt")
    train = json.loads((run / "train.json").read_text())
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    doc = {"dataset": args.name, "recipe": args.recipe, "recipe_params": args.recipe_params,
           "resolution": args.resolution, "device": args.device, "compile": args.compile, "batch": args.batch,
           "minutes": args.minutes, "train": train, "train_wall_s": train_wall,
           "metrics": scores(metrics), "fid_meta": metrics.get("fid_meta"),
           "eval_meta": metrics.get("meta")}
    print(f"{tag}: {train['step']} steps in {train['train_minutes']:.1f} min, {train['images_per_s']:.0f} images/s; "
          + ", ".join(f"{k} {v:.4g}" for k, v in doc["metrics"].items() if isinstance(v, float)), flush=True)
    shutil.copyfile(run / "eval" / "grid.png", RESULTS_DIR / f"products_{args.name}_gpu_{tag}.png")
    save_result("products", f"{args.name}_gpu_{tag}", doc)




# ------------------------------------------------------------------------------------------- floor


def cmd_floor(args: argparse.Namespace) -> None:
    """The evaluate step's scores of held-out real photos (val and test, cycled to the sample counts) in place of
    generated ones: what a perfect generator would score here. Also trains and caches the domain classifier and
    the real side's Inception statistics once, before parallel runs would each compute them."""
    import torch

    from productgan.data.arrays import load_split
    from productgan.metrics.evaluate import EvaluateParams, evaluate_samples
    from productgan.params import load_section

    torch.set_num_threads(args.threads)
    work = workdir(args.name)
    params_file = write_params(work / "floor" / "params.yaml", evaluate=evaluate_settings(work, args.precision))
    params = load_section("evaluate", EvaluateParams, params_file)
    held = [load_split(work / "prepared", s, mmap=False) for s in ("val", "test")]
    x = np.concatenate([h[0] for h in held])
    y = np.concatenate([h[1] for h in held])
    by_label = {int(c): np.flatnonzero(y == c) for c in np.unique(y)}

    def held_out(labels: np.ndarray, seed: int) -> np.ndarray:
        """Each asked category's held-out photos in turn (cycled when more are asked than there are)."""
        seen = {c: 0 for c in by_label}
        out = np.empty((len(labels), *x.shape[1:]), np.uint8)
        for i, c in enumerate(labels.tolist()):
            idx = by_label[c]
            out[i] = x[idx[seen[c] % len(idx)]]
            seen[c] += 1
        return out

    result = evaluate_samples(held_out, work / "prepared", params, device="cpu")
    doc = {"dataset": args.name, "held_out_images": int(len(y)), **scores(result),
           "fid_meta": {k: result["fid_meta"].get(k) for k in ("n_generated", "n_real", "real_split")},
           "eval_meta": {k: result["meta"].get(k) for k in ("n_generated", "n_real", "real_split")}}
    print(json.dumps(doc), flush=True)
    save_result("products", f"{args.name}_floor", doc)



# --------------------------------------------------------------------------------------------- all


def cmd_all(args: argparse.Namespace) -> None:
    """Every step for each ``--set NAME=FOLDER`` (what is already there is kept: a stopped run resumes), then the
    report: the benchmark of a fresh clone in one command."""
    for item in args.set:
        name, _, folder = item.partition("=")
        if not folder:
            sys.exit(f"--set {item!r}: expected NAME=FOLDER")
        if not (RESULTS_DIR / f"products_{name}_prepare.json").is_file() or not (workdir(name) / "prepared").is_dir():
            cmd_prepare(argparse.Namespace(photos=folder, name=name, clusters=args.clusters))
        common = {"name": name, "recipes": args.recipes, "variants": None, "batch": args.batch,
                  "precision": args.precision}
        if not (RESULTS_DIR / f"products_{name}_throughput.json").is_file():
            cmd_throughput(argparse.Namespace(**common, rounds=3, steps=40, threads=MEASURE_THREADS, save_suffix=""))
        if not (RESULTS_DIR / f"products_{name}_floor.json").is_file():
            cmd_floor(argparse.Namespace(name=name, threads=MEASURE_THREADS, precision=args.precision))
        cmd_run(argparse.Namespace(**common, minutes=args.minutes, seeds=args.seeds, parallel=args.parallel,
                                   throughput=None, save_suffix=""))
    cmd_report(args)


# ------------------------------------------------------------------------------------------ report

RESULTS_MD = REPO / "benchmarks" / "RESULTS.md"
SECTION = "## Colour product photos"
SCORES = (("fid2k", "Inception FID (2k)", 1), ("fid_inf", "FID∞", 1), ("kid", "KID", 3), ("precision", "precision", 2),
          ("recall", "recall", 2), ("class_accuracy", "class acc.", 2), ("fd_domain", "fd_domain", 2))


def _load(pattern: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) | {"_file": p.name} for p in sorted(RESULTS_DIR.glob(pattern))]


def _cell(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and value is not None else "—"


def run_table(doc: dict[str, Any]) -> list[str]:
    """One row per run, then the mean over seeds of each variant; the grids below."""
    head = "| variant | seed | steps | " + " | ".join(h for _, h, _ in SCORES) + " |"
    lines = [head, "|" + "---|" * (3 + len(SCORES))]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for row in doc["rows"]:
        by_variant.setdefault(row["variant"], []).append(row)
        lines.append(f"| {row['variant']} | {row['seed']} | {row['steps']:,} | "
                     + " | ".join(_cell(row.get(k), d) for k, _, d in SCORES) + " |")
    for variant, rows in by_variant.items():
        if len(rows) > 1:
            means = [statistics.mean(r[k] for r in rows) if all(isinstance(r.get(k), float) for r in rows) else None
                     for k, _, _ in SCORES]
            lines.append(f"| **{variant}, mean** | {len(rows)} seeds | | "
                         + " | ".join(f"**{_cell(m, d)}**" for m, (_, _, d) in zip(means, SCORES, strict=True)) + " |")
    first = doc["rows"][0]
    lines += ["", f"Real side: Inception {first['fid_meta']['n_real']:,} {first['fid_meta']['real_split']} images vs "
              f"{first['fid_meta']['n_generated']:,} generated; domain metrics {first['eval_meta']['n_real']:,} "
              f"{first['eval_meta']['real_split']} images (asked: {first['eval_meta']['real_split_asked']}) vs "
              f"{first['eval_meta']['n_generated']:,} generated.", ""]
    lines += [f"![{r['variant']} seed {r['seed']}](results/{Path(r['grid']).name}) " for r in doc["rows"]]
    return lines


def measured_by_lines(doc: dict[str, Any]) -> list[str]:
    return [f"- {r['when']}, load {r['load_average']}: `{r['command']}`" for r in doc["measured_by"]]


def cmd_report(_args: argparse.Namespace) -> None:
    out = [SECTION, "", "Written by `python -m benchmarks.bench_products report` from "
           "benchmarks/results/products_*.json (`bench_products.py` says how each number is made). Inception FID, "
           "KID, precision/recall and class accuracy are the evaluate step's; KID, precision/recall and "
           "`fd_domain` on its domain classifier's features (not comparable with published numbers), FID on "
           "Inception (2,000 generated on a CPU).", ""]
    for doc in _load("products_*_prepare.json"):
        counts = doc["counts"]
        out += [f"### Data: `{doc['name']}` ({doc['photos']})", "",
                f"{doc['layout']['photos']:,} photos, {doc['layout']['layout']}; categories "
                f"{', '.join(doc['categories'])}" + (f" (sizes {doc['layout']['cluster_sizes']})"
                                                      if "cluster_sizes" in doc["layout"] else "")
                + f"; after preprocess: train {counts['train']['total']:,}, val "
                f"{counts.get('val', {}).get('total', 0):,}, test {counts.get('test', {}).get('total', 0):,} at "
                f"{RESOLUTION} px RGB. Command: `{doc['command']}`", ""]
    for doc in _load("products_*_throughput*.json"):
        m = doc["machine"]
        out += [f"### Training throughput: `{doc['dataset']}`, {doc['threads']} thread(s) ({doc['when']})", "",
                f"Machine: {m.get('cpu', '?')}, nproc {m['nproc']}; {doc['threads']} thread(s), batch {doc['batch']}, "
                f"{doc['precision']}, {doc['steps']} steps per measurement, variants interleaved. Measured by (each "
                "command's variants; the load average at its end):", "",
                *measured_by_lines(doc), "",
                "| variant | images per CPU-second (rounds) | median | steps for 1 minute of 2 cores |",
                "|---|---|---|---|"]
        for name, median in doc["median_images_per_cpu_s"].items():
            rounds = ", ".join(f"{r['images_per_cpu_s']:.0f}" for r in doc["rows"] if r["variant"] == name)
            out.append(f"| {name} | {rounds} | {median:.0f} | {60 * CORES * median / doc['batch']:,.0f} |")
        out.append("")
    for doc in sorted(_load("products_*_run_*.json"), key=lambda d: (d["dataset"], d["minutes"], d["_file"])):
        m = doc["machine"]
        budget = {r["variant"]: r["steps"] for r in doc["rows"]}  # each row keeps the step budget it trained
        out += [f"### `{doc['dataset']}`: {doc['minutes']:g} minutes of {doc.get('cores', CORES)} cores per run "
                f"({doc['when']})", "",
                f"Machine: {m.get('cpu', '?')}, nproc {m['nproc']}; each run trained its step budget "
                f"({', '.join(f'{k} {v:,}' for k, v in budget.items())}) at one thread, batch "
                f"{doc['batch']}, {doc['precision']}. Measured by (the load average at each command's end):", "",
                *measured_by_lines(doc), ""]
        out += run_table(doc) + [""]
    for doc in _load("products_*_gpu_*.json"):
        out += [f"### GPU: `{doc['dataset']}` at {doc['resolution']} px ({doc['machine'].get('gpu')})", "",
                f"{doc['train']['step']:,} steps in {doc['minutes']:g} minutes, {doc['train']['images_per_s']:,.0f} "
                f"images/s; " + ", ".join(f"{k} {v:.4g}" for k, v in doc["metrics"].items() if isinstance(v, float)),
                ""]
    for extra in sorted(RESULTS_DIR.glob("products_notes*.md")):
        out += [extra.read_text().rstrip(), ""]
    replace_section(RESULTS_MD, SECTION, "\n".join(out))
    print(f"wrote {RESULTS_MD}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--photos", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--clusters", type=int, default=5)
    t = sub.add_parser("throughput")
    t.add_argument("--name", required=True)
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--steps", type=int, default=40)
    t.add_argument("--save-suffix", default="")
    r = sub.add_parser("run")
    r.add_argument("--name", required=True)
    r.add_argument("--minutes", type=float, required=True, help="budget: minutes of 2 cores, as steps per variant")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    r.add_argument("--parallel", type=int, default=2, help="runs at once, one thread each")
    r.add_argument("--throughput", default=None, help="the set whose measured throughput sets the step budgets "
                   "(default: --name; the networks' speed does not depend on the photos)")
    r.add_argument("--save-suffix", default="")
    g = sub.add_parser("gpu")
    g.add_argument("--name", required=True)
    g.add_argument("--photos", default=None, help="prepare these photos first when --name has none yet")
    g.add_argument("--clusters", type=int, default=5)
    g.add_argument("--recipe", default="default")
    g.add_argument("--recipe-params", type=json.loads, default={}, help='JSON overrides, e.g. {"g_channels": 32}')
    g.add_argument("--resolution", type=int, default=128)
    g.add_argument("--minutes", type=float, default=10.0)
    g.add_argument("--steps", type=int, default=10**7, help="also stop after this many steps")
    g.add_argument("--batch", type=int, default=64)
    g.add_argument("--device", default="cuda")
    g.add_argument("--compile", action="store_true")
    g.add_argument("--fid-n", default="auto", type=lambda v: v if v == "auto" else int(v))
    g.add_argument("--eval-n", type=int, default=10000)
    g.add_argument("--eval-params", type=json.loads, default={}, help="JSON overrides of the evaluate section")
    f = sub.add_parser("floor")
    f.add_argument("--name", required=True)
    f.add_argument("--threads", type=int, default=MEASURE_THREADS)
    f.add_argument("--precision", choices=["bf16", "fp32"], default=None)
    a = sub.add_parser("all")
    a.add_argument("--set", action="append", required=True, metavar="NAME=FOLDER",
                   help="a photo folder and its name, e.g. white=.../Fashion-Recommendation-System/images (repeat)")
    a.add_argument("--clusters", type=int, default=5)
    a.add_argument("--minutes", type=float, default=30.0)
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a.add_argument("--parallel", type=int, default=2)
    a.add_argument("--recipes", nargs="+", default=None, help="default: the variants of VARIANTS")
    a.add_argument("--batch", type=int, default=64)
    a.add_argument("--precision", choices=["bf16", "fp32"], default=None)
    sub.add_parser("report")
    for q in (t, r):
        q.add_argument("--recipes", nargs="+", default=None, help="default: the variants of VARIANTS")
        q.add_argument("--variants", type=json.loads, default=None,
                       help='JSON list of {"name", "recipe", "recipe_params"?}; default: one per --recipes')
        q.add_argument("--batch", type=int, default=64)
        q.add_argument("--threads", type=int, default=MEASURE_THREADS, help="threads of a throughput measurement")
        q.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                       help="train.precision of every run (default: bf16 on a CPU with native bf16, else fp32)")
    args = ap.parse_args()
    if getattr(args, "precision", "") is None:
        args.precision = default_precision()
    commands = {"prepare": cmd_prepare, "throughput": cmd_throughput, "run": cmd_run, "gpu": cmd_gpu,
                "floor": cmd_floor, "all": cmd_all, "report": cmd_report}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
