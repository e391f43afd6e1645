"""Training benchmarks for `productgan train`; results go into benchmarks/RESULTS.md (section "## Train").

  python -m benchmarks.bench_train throughput   # images/s: both recipes at 28x28 and 64x64 (CPU or GPU),
                                                # and the 64x64 baseline vs. a plain reference loop
  python -m benchmarks.bench_train quality      # default vs baseline at equal training time, Fashion-MNIST
  python -m benchmarks.bench_train gpu          # on a CUDA machine: default at 28x28, bf16, compile on/off,
                                                # batch 256..4096
  python -m benchmarks.bench_train score DIR..  # score generator folders (fd_domain, class accuracy, fd_clf)
  python -m benchmarks.bench_train report       # write benchmarks/RESULTS.md's train section from the JSON

Every command stores its numbers in benchmarks/results/train_<command>.json (with machine, load and
command line) and `report` renders them. The reference loop is what a torchvision-style tutorial does:
a map-style Dataset that turns each image into a tensor (PIL -> ToTensor -> Normalize) in Python, a
DataLoader that collates them, the same networks in fp32 NCHW, separate D passes on real and fake, and
`.item()` on both losses every step.

Quality metric: the evaluate step's `fd_domain` (the metric registration promotes on) and class accuracy,
for the exported generator and for the last four checkpoints; with `--fid N` also the evaluate step's Inception
`fid` at N a side, `fid_inf` and the fit's FID at 10,000 (for the exported generator only: ~N/7 CPU-seconds
each). Equal CPU budgets on a shared machine: `quality --steps S` trains every variant for S steps (no time
limit); convert "10 minutes of 2 quiet cores" into steps per variant from its images per CPU-second
(benchmarks/compare_checkouts.py) and the quiet-machine throughput of the default in RESULTS.md.
For reference also `fd_clf`: a small CNN
classifier trained here (seeded, cached); the Fréchet distance between its 128-d penultimate features of
10,000 real test images and 10,000 generated images (1,000 per category). Neither is FID.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.results_file import RESULTS_DIR, replace_section, save_result

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = REPO / "benchmarks" / "RESULTS.md"
FMNIST = Path(os.environ.get("PRODUCTGAN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
CATEGORIES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
              "Ankle boot"]
CACHE = Path(os.environ.get("PRODUCTGAN_CACHE", REPO / ".cache" / "productgan"))


# ------------------------------------------------------------------------------------------- data


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    from productgan.data.idx import read_idx

    prefix = "train" if split == "train" else "t10k"
    x = read_idx(FMNIST / f"{prefix}-images-idx3-ubyte.gz")[:, None].copy()
    y = read_idx(FMNIST / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


def resize(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if images.shape[-1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(im[0]).resize((size, size), Image.BILINEAR)) for im in images])[
        :, None
    ]


def write_prepared(root: Path, x: np.ndarray, y: np.ndarray, test: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    from productgan.io import atomic_write_json

    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "train_images.npy", x)
    np.save(root / "train_labels.npy", y)
    if test is not None:
        np.save(root / "test_images.npy", test[0])
        np.save(root / "test_labels.npy", test[1])
    atomic_write_json(root / "manifest.json", {
        "categories": CATEGORIES, "resolution": int(x.shape[-1]), "channels": int(x.shape[1]),
        "counts": {"train": {"total": int(len(y))}}, "refused": [], "dataset_hash": "bench-fashion-mnist",
        "params": {},
    })
    return root


# ------------------------------------------------------------------------------------- throughput


def trainer_images_per_s(
    data: Path, recipe: str, batch: int, steps: int, threads: int, device: str = "cpu", **overrides: Any
) -> float:
    """images/s of the real training loop (track off), after one warm-up interval."""
    from productgan.gan.recipes import TrainParams
    from productgan.gan.trainer import Trainer

    interval = max(1, steps // 3)
    with tempfile.TemporaryDirectory() as tmp:
        p = TrainParams.of_recipe(
            recipe, steps=3 * interval, batch_size=batch, num_threads=threads, device=device,
            log_every=interval, sample_every=10**9, checkpoint_every=10**9, checkpoint_dir=f"{tmp}/ckpt",
            metrics_file=f"{tmp}/m.json", plots_file=f"{tmp}/p.csv", **overrides,
        )
        trainer = Trainer(p, data, f"{tmp}/out", track=False)
        trainer.run()
        ips = trainer.history["images_per_s"][1:]
    return float(np.median(ips))


class TorchvisionStyleDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.FashionMNIST + ToTensor() + Normalize((0.5,), (0.5,)) do, per image."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = Image.fromarray(self.images[i, 0], mode="L")
        t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).float().div(255.0).unsqueeze(0)
        return (t - 0.5) / 0.5, int(self.labels[i])


def reference_images_per_s(images: np.ndarray, labels: np.ndarray, batch: int, steps: int, workers: int) -> float:
    """The plain loop of the PyTorch DCGAN example on the same networks as the baseline recipe."""
    from productgan.gan.config import GeneratorConfig
    from productgan.gan.networks import build_discriminator, build_generator
    from productgan.gan.recipes import TrainParams

    r = TrainParams.of_recipe("baseline")
    torch.manual_seed(0)
    cfg = GeneratorConfig(arch=r.arch, resolution=images.shape[-1], channels=1, latent_dim=128,
                          base_channels=r.g_channels, categories=CATEGORIES)
    G, D = build_generator(cfg), build_discriminator(cfg, r.d_channels)
    opt_g = torch.optim.Adam(G.parameters(), lr=r.lr_g, betas=(r.beta1, r.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=r.lr_d, betas=(r.beta1, r.beta2))
    crit = nn.BCEWithLogitsLoss()
    loader = torch.utils.data.DataLoader(TorchvisionStyleDataset(images, labels), batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True)
    interval = max(1, steps // 3)
    times, t0, done = [], time.perf_counter(), 0
    while done < 3 * interval:
        for real, y in loader:
            ones, zeros = torch.ones(batch), torch.zeros(batch)
            D.zero_grad()
            err_real = crit(D(real, y), ones)
            err_real.backward()
            fake = G(torch.randn(batch, 128), y)
            err_fake = crit(D(fake.detach(), y), zeros)
            err_fake.backward()
            opt_d.step()
            G.zero_grad()
            err_g = crit(D(fake, y), ones)
            err_g.backward()
            opt_g.step()
            _log = (err_real.item() + err_fake.item(), err_g.item())  # the per-step log of the tutorial
            done += 1
            if done % interval == 0:
                now = time.perf_counter()
                times.append(interval * batch / (now - t0))
                t0 = now
            if done >= 3 * interval:
                break
    return float(np.median(times[1:]))


def cmd_throughput(args: argparse.Namespace) -> None:
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    x, y = fashion_mnist("train")
    x, y = x[: args.images], y[: args.images]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = {}
        for res in (28, 64):
            data[res] = write_prepared(Path(tmp) / f"d{res}", resize(x, res), y)
        for rnd in range(args.rounds):  # rounds interleave the variants: a shared CPU's load hits all alike
            for res in (28, 64):
                for recipe in ("baseline", "default"):
                    for precision in ("bf16", "fp32"):
                        ips = trainer_images_per_s(data[res], recipe, args.batch, args.steps, threads,
                                                   precision=precision)
                        rows.append({"what": f"productgan train --recipe {recipe}", "resolution": res,
                                     "batch": args.batch, "precision": precision, "round": rnd, "images_per_s": ips})
                        print(rows[-1], flush=True)
            x64 = resize(x, 64)
            for workers in (0, 2):
                ips = reference_images_per_s(x64, y, args.batch, args.steps, workers)
                rows.append({"what": f"reference loop (DataLoader, num_workers={workers})", "resolution": 64,
                             "batch": args.batch, "precision": "fp32", "round": rnd, "images_per_s": ips})
                print(rows[-1], flush=True)
    save_result("train", "throughput", {"threads": threads, "steps": args.steps, "rows": rows})


# ---------------------------------------------------------------------------------------- quality


class Classifier(nn.Module):
    """A small CNN for Fashion-MNIST (~87% test accuracy after 3 epochs); its 128-d penultimate layer is the
    feature space."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, 1, 1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _norm(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).float().div(127.5).sub(1.0)


def classifier(epochs: int = 3) -> Classifier:
    path = CACHE / f"bench_train_classifier_e{epochs}.pt"
    net = Classifier()
    if path.is_file():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    x, y = fashion_mnist("train")
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y) - 127, 128):
            idx = perm[i : i + 128].numpy()
            loss = F.cross_entropy(net(_norm(x[idx])), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"classifier epoch {epoch + 1}/{epochs} done", flush=True)
    net.eval()
    xt, yt = fashion_mnist("test")
    acc = (predict(net, xt).argmax(1) == yt).mean()
    print(f"classifier test accuracy {acc:.4f}")
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net


@torch.no_grad()
def predict(net: Classifier, images: np.ndarray, feats: bool = False) -> np.ndarray:
    out = []
    for i in range(0, len(images), 500):
        t = _norm(images[i : i + 500])
        out.append((net.features(t) if feats else net(t)).numpy())
    return np.concatenate(out).astype(np.float64)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """fd_clf: the project's Fréchet distance (productgan.metrics.frechet) on the benchmark classifier's features."""
    from productgan.metrics.frechet import frechet_distance_features

    return frechet_distance_features(a, b)


FID_N = 0  # --fid N: also the Inception fid / fid_inf at N a side (0 = off)


def score(G: nn.Module, cfg: Any, net: Classifier, real_feats: np.ndarray, data: Path,
          per_class: int = 1000, fid: bool = False) -> dict[str, float]:
    """The evaluate step's fd_domain and class_accuracy (the metric the recipes are compared on) and, for
    reference, fd_clf and the benchmark classifier's accuracy, for a loaded generator."""
    from productgan.gan.sample import generate_uint8
    from productgan.metrics.evaluate import EvaluateParams, evaluate_generator

    labels = np.repeat(np.arange(10), per_class)
    fake = generate_uint8(G, labels, seed=123, latent_dim=cfg.latent_dim)
    if fake.shape[-1] != 28:
        fake = resize(fake, 28)
    feats = predict(net, fake, feats=True)
    acc = float((predict(net, fake).argmax(1) == labels).mean())
    inception = ["fid", "fid_inf"] if fid and FID_N else []
    params = EvaluateParams(metrics=["fd_domain", "class_accuracy", *inception], fid_n=FID_N or "auto")
    result = evaluate_generator(G, cfg, data, params, cache_dir=CACHE / "evaluate", device="cpu")
    out = {"fd_clf": frechet(real_feats, feats), "class_accuracy": acc, "fd_domain": result["fd_domain"],
           "eval_class_accuracy": result["class_accuracy"]}
    if inception:
        from productgan.metrics.catalog import fid_name

        out.update(fid=result[fid_name(FID_N)], fid_inf=result["fid_inf"],
                   fid_at_10000=result["fid_inf_fit"]["fid_at_10000"], fid_n=FID_N,
                   fid_precision=result["fid_meta"]["precision"])
    return out


def score_folder(folder: Path, net: Classifier, real_feats: np.ndarray, data: Path) -> dict[str, float]:
    from productgan.gan.export import load_generator

    G, cfg = load_generator(folder)
    return score(G, cfg, net, real_feats, data, fid=True)


def score_snapshots(ckpt_dir: Path, net: Classifier, real_feats: np.ndarray, data: Path) -> list[dict[str, Any]]:
    """Scores of the generator in each kept checkpoint, as the trainer would export it (the EMA with its own
    BatchNorm statistics when on): a single snapshot of a GAN moves a lot from one step to the next, so the
    mean over the last few is the steadier comparison."""
    from productgan.gan.checkpoint import list_checkpoints, load_checkpoint
    from productgan.gan.config import GeneratorConfig
    from productgan.gan.ema import recalibrate_batchnorm
    from productgan.gan.networks import build_generator

    out = []
    for step, path in list_checkpoints(ckpt_dir):
        state = load_checkpoint(path)
        cfg = GeneratorConfig.from_dict(state["config"])
        G = build_generator(cfg)
        G.load_state_dict(state["G_ema"] or state["G"])
        if state["G_ema"]:
            recalibrate_batchnorm(G, cfg.latent_dim, len(cfg.categories))
        out.append({"step": step, **score(G.eval(), cfg, net, real_feats, data)})
    return out


QUALITY_CHILD = """
import json, sys, time
from productgan.gan.recipes import TrainParams
from productgan.gan.trainer import Trainer
spec = json.loads(sys.argv[1])
out = spec["out"]
settings = {"num_threads": 1, **spec.get("params", {})}  # one thread unless the variant asks for more
p = TrainParams.of_recipe(spec["recipe"], steps=spec["steps"], max_minutes=spec["minutes"],
                          checkpoint_dir=out + "/ckpt", metrics_file=out + "/metrics.json",
                          plots_file=out + "/plots.csv", log_every=100, sample_every=10**9, checkpoint_every=250,
                          keep_checkpoints=4, **settings, **spec.get("recipe_params", {}))
t0, c0 = time.time(), time.process_time()
res = Trainer(p, spec["data"], out + "/generator", track=False).run()
json.dump({"status": res.status, "step": res.step, "wall_s": time.time() - t0,
           "cpu_s": time.process_time() - c0, **res.metrics}, open(out + "/child.json", "w"))
"""


def cmd_quality(args: argparse.Namespace) -> None:
    """The variants train side by side (one thread each unless a variant sets ``num_threads``, the same
    wall-clock budget, so a shared CPU's load falls on all alike), then each generator is scored."""
    import subprocess

    net = classifier()
    xt, yt = fashion_mnist("test")
    real_feats = predict(net, xt, feats=True)
    x, y = fashion_mnist("train")
    root = Path(args.workdir)
    data = write_prepared(root / "prepared", x, y, test=(xt, yt))  # training reads train, scoring test
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = root / "child.py"
    script.write_text(QUALITY_CHILD)
    variants = args.variants or [{"name": r, "recipe": r} for r in ("baseline", "default")]
    procs, clocks = {}, []
    for v in variants:
        out = root / v["name"]
        out.mkdir(parents=True, exist_ok=True)
        steps = v.get("steps", args.steps or 10**9)
        minutes = None if v.get("steps") or args.steps else args.minutes  # a step budget replaces the clock
        clocks.append(minutes)
        spec = {"recipe": v["recipe"], "steps": steps, "minutes": minutes, "data": str(data),
                "out": str(out), "params": v.get("params", {}), "recipe_params": v.get("recipe_params", {})}
        procs[v["name"]] = (v, subprocess.Popen(
            [sys.executable, str(script), json.dumps(spec)], env=env,
            stdout=open(out / "log.txt", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
        ))
    rows = []
    for name, (v, proc) in procs.items():
        proc.wait()
        child = json.loads((root / name / "child.json").read_text())
        scores = score_folder(root / name / "generator", net, real_feats, data)
        snapshots = score_snapshots(root / name / "ckpt", net, real_feats, data)
        rows.append({"name": name, "variant": v, **child, **scores, "snapshots": snapshots})
        print(json.dumps(rows[-1]), flush=True)
    floor = frechet(real_feats, predict(net, x[:10000], feats=True))
    save_result("train", args.save_as, {"minutes": args.minutes if any(clocks) else None, "steps": args.steps,
                                        "fid_n": FID_N, "rows": rows, "fd_clf_train_vs_test": floor})


def cmd_score(args: argparse.Namespace) -> None:
    """Score existing generator folders: the evaluate step's fd_domain and class accuracy, and fd_clf."""
    net = classifier()
    xt, yt = fashion_mnist("test")
    real_feats = predict(net, xt, feats=True)
    x, y = fashion_mnist("train")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_prepared(Path(tmp) / "prepared", x, y, test=(xt, yt))
        for folder in args.generators:
            scores = score_folder(Path(folder), net, real_feats, data)
            print(json.dumps({"generator": folder, **scores}), flush=True)


def cmd_gpu(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu: no CUDA device here")
    x, y = fashion_mnist("train")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_prepared(Path(tmp) / "d28", x, y)
        for compile_ in (False, True):
            for batch in (256, 1024, 4096):
                ips = trainer_images_per_s(data, "default", batch, args.steps, 0, device="cuda",
                                           precision="bf16", compile=compile_)
                rows.append({"recipe": "default", "resolution": 28, "batch": batch, "precision": "bf16",
                             "compile": compile_, "images_per_s": ips})
                print(rows[-1], flush=True)
    save_result("train", "gpu", {"rows": rows})


# ----------------------------------------------------------------------------------------- report


def cmd_report(_args: argparse.Namespace) -> None:
    sections = ["## Train", ""]
    tp = RESULTS_DIR / "train_throughput.json"
    if tp.is_file():
        doc = json.loads(tp.read_text())
        m = doc["machine"]
        sections += [
            f"### Training throughput ({doc['when']})", "",
            f"Machine: {m.get('cpu', '?')}, nproc {m['nproc']}, torch {m['torch']}, {doc['threads']} threads, "
            f"native bf16: {m['cpu_native_bf16']}, load average at the end {m['load_average']}; each "
            "variant was measured in interleaved rounds (a passing load falls on all alike), the table shows "
            "the best round.", "",
            f"Command: `{doc['command']}`", "",
            "| what | resolution | batch | precision | images/s (best round) | all rounds |",
            "|---|---|---|---|---|---|",
        ]
        groups: dict[tuple, list[float]] = {}
        for row in doc["rows"]:
            key = (row["what"], row["resolution"], row["batch"], row["precision"])
            groups.setdefault(key, []).append(row["images_per_s"])
        for (what, res, batch, prec), vals in groups.items():
            sections.append(f"| {what} | {res}x{res} | {batch} | {prec} | {max(vals):,.0f} | "
                            f"{', '.join(f'{v:,.0f}' for v in vals)} |")
        ref = max(max(v) for k, v in groups.items() if k[0].startswith("reference") and k[1] == 64)
        ours = max(groups.get(("productgan train --recipe baseline", 64, doc["rows"][0]["batch"], "bf16"), [0]))
        ours32 = max(groups.get(("productgan train --recipe baseline", 64, doc["rows"][0]["batch"], "fp32"), [0]))
        sections += ["", f"Baseline at 64x64, batch {doc['rows'][0]['batch']}: {ours:,.0f} images/s (bf16) and "
                     f"{ours32:,.0f} (fp32) vs. {ref:,.0f} for the best reference loop: **{ours / ref:.2f}x** "
                     f"({ours32 / ref:.2f}x in fp32; target 1.5x).", ""]
    q = RESULTS_DIR / "train_quality.json"
    if q.is_file():
        doc = json.loads(q.read_text())
        m = doc["machine"]
        sections += [
            f"### Quality at equal training time ({doc['when']})", "",
            f"Machine: {m.get('cpu', '?')}, nproc {m['nproc']}, load average at the end {m['load_average']}. "
            "The runs trained at the same time, one thread each, for the same budget of "
            + (f"{doc['minutes']:g} minutes of wall time" if doc.get("minutes") else f"{doc.get('steps'):,} steps")
            + " on the full Fashion-MNIST train split (60,000 images, 28x28).", "",
            f"Command: `{doc['command']}`", "",
            "Metric: the evaluate step's `fd_domain` (Fréchet distance on its domain classifier's features, "
            "10,000 generated vs. the test split; lower is better) and its `class_accuracy` (does the "
            "generator draw the asked category?), for the exported generator and as the mean over the last "
            "four checkpoints (one GAN snapshot moves a lot from step to step; the mean is the steadier "
            "comparison). `fd_clf` is the benchmark's own classifier, for reference.", "",
            "| run | recipe | seed | steps | CPU s | fd_domain (exported) | fd_domain (mean of last 4) "
            "| class_accuracy | fd_clf |", "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in doc["rows"]:
            snaps = [s["fd_domain"] for s in row.get("snapshots", []) if "fd_domain" in s]
            mean = f"{np.mean(snaps):.2f}" if snaps else "—"
            seed = row["variant"].get("params", {}).get("seed", 0)
            sections.append(f"| {row['name']} | {row['recipe']} | {seed} | {row['step']:,} | {row['cpu_s']:.0f} | "
                            f"{row.get('fd_domain', float('nan')):.2f} | {mean} | "
                            f"{row.get('eval_class_accuracy', float('nan')):.3f} | {row['fd_clf']:.2f} |")
        sections.append("")
    g = RESULTS_DIR / "train_gpu.json"
    if g.is_file():
        doc = json.loads(g.read_text())
        sections += [f"### GPU ({doc['machine'].get('gpu')})", "", "| batch | compile | images/s |", "|---|---|---|"]
        sections += [f"| {r['batch']} | {r['compile']} | {r['images_per_s']:,.0f} |" for r in doc["rows"]]
        sections.append("")
    else:
        sections += ["### GPU", "", "No GPU was available to this work: the CUDA path (data resident on the GPU, "
                     "bf16 autocast, optional torch.compile, NCCL DDP) is covered by code review only. "
                     "`python -m benchmarks.bench_train gpu` measures it (default recipe, 28x28, bf16, compile "
                     "on/off, batch 256 to 4096; target 50,000 images/s on an H100).", ""]
    for extra in sorted(RESULTS_DIR.glob("train_notes*.md")):
        sections += [extra.read_text().rstrip(), ""]
    replace_section(RESULTS_MD, "## Train", "\n".join(sections))
    print(f"wrote {RESULTS_MD}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--steps", type=int, default=30)
    t.add_argument("--images", type=int, default=4096)
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--rounds", type=int, default=2)
    q = sub.add_parser("quality")
    q.add_argument("--minutes", type=float, default=5.0)
    q.add_argument("--steps", type=int, default=0, help="train every variant this many steps, no time limit "
                   "(a variant's own `steps` wins); 0 = the --minutes budget")
    q.add_argument("--variants", type=json.loads, default=None,
                   help='JSON list of {"name", "recipe", "steps"?, "params"?, "recipe_params"?}; '
                        "default: the two shipped recipes, each for the time budget")
    q.add_argument("--save-as", default="quality")
    q.add_argument("--workdir", default=str(REPO / ".cache" / "bench_train_quality"))
    sc = sub.add_parser("score")
    sc.add_argument("generators", nargs="+")
    g = sub.add_parser("gpu")
    g.add_argument("--steps", type=int, default=60)
    sub.add_parser("report")
    for parser in (q, sc):
        parser.add_argument("--fid", type=int, default=0, metavar="N",
                            help="also score the exported generators with the Inception fid/fid_inf at N a side")
    args = ap.parse_args()
    global FID_N
    FID_N = getattr(args, "fid", 0)
    commands = {"throughput": cmd_throughput, "quality": cmd_quality, "score": cmd_score, "gpu": cmd_gpu,
                "report": cmd_report}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
