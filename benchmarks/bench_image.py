"""The project image: size (as stored, and compressed as a registry serves it), where the bytes are (layers,
the torch share a slim image would drop), and the cold start of a step in a container of it.

    python benchmarks/bench_image.py [--image TAG] [--repeat 3]

TAG defaults to what `make image TORCH=cpu` builds for this commit (`make -s image-tag TORCH=cpu`); build it
first. Uses podman (infra/podman/containers.conf as make image does). The compressed size saves the image as
a folder with gzip-compressed layers under /var/tmp (removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipelines.engine import engine_env  # noqa: E402

# What a step imports before its work starts (components/<step>.py bodies and the productgan CLI they run).
STARTS = {
    "container start (`true`)": ["true"],
    "`productgan --help`": ["productgan", "--help"],
    "retrain-check imports (mlflow, lineage)": ["python", "-c", "import mlflow, components.retrain, "
                                                "productgan.lineage"],
    "ingest imports (dvc-data, Pillow)": ["python", "-c", "import dvc_data.hashfile.build, PIL.Image, "
                                          "components.runtime"],
    "train imports (torch, mlflow)": ["python", "-c", "import torch, mlflow, productgan.gan.trainer"],
}


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], env=engine_env(), capture_output=True, text=True, check=True).stdout


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(["podman", *cmd], env=engine_env(), capture_output=True, check=True)
    return time.perf_counter() - start


def compressed_size(image: str) -> int:
    with tempfile.TemporaryDirectory(prefix="productgan-bench-", dir="/var/tmp") as tmp:
        out = Path(tmp) / "image"
        subprocess.run(["podman", "save", "--format", "docker-dir", "--compress", "-o", str(out), image],
                       env=engine_env(), capture_output=True, check=True)
        return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    image = args.image or subprocess.run(["make", "-s", "image-tag", "TORCH=cpu"], cwd=REPO, capture_output=True,
                                         text=True, check=True).stdout.strip()
    if not shutil.which("podman"):
        sys.exit("podman is not installed (make containers)")
    (record,) = json.loads(podman("image", "inspect", image))
    flavour = record["Config"]["Labels"].get("io.productgan.torch", "?")
    print(f"image {image} (torch {flavour}); load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")

    size = record["Size"]
    packed = compressed_size(image)
    torch_mb = podman("run", "--rm", image, "sh", "-c", "du -sm /usr/local/lib/python3.11/dist-packages/torch "
                      "/usr/local/lib/python3.11/dist-packages/nvidia* 2>/dev/null | awk '{s+=$1} END {print s}'")
    deps_mb = podman("run", "--rm", image, "du", "-sm", "/usr/local/lib/python3.11/dist-packages").split()[0]
    print("\n| what | MB |\n|---|---|")
    print(f"| image as stored (uncompressed) | {size / 1e6:.0f} |")
    print(f"| image compressed (gzip layers, what a node pulls) | {packed / 1e6:.0f} |")
    print(f"| Python packages (dist-packages) | {deps_mb} |")
    print(f"| of which torch (+ nvidia-* CUDA libraries) | {torch_mb.strip()} |")

    print("\n| layer (newest first) | MB |\n|---|---|")
    for line in podman("history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image).splitlines():
        amount, created = line.split("\t", 1)
        # "|2 TORCH=cpu ... /bin/sh -c #(nop) COPY ..." -> "COPY ..."
        step = re.sub(r"^\|\d+ (\S+=\S* )*", "", created).replace("/bin/sh -c ", "").replace("#(nop) ", "")
        if amount.strip() not in ("0 B", "0B"):
            print(f"| `{step[:90].strip()}` | {amount} |")

    print(f"\n| cold start in a container of the image (median of {args.repeat}) | s |\n|---|---|")
    for what, cmd in STARTS.items():
        samples = [timed(["run", "--rm", image, *cmd]) for _ in range(args.repeat)]
        print(f"| {what} | {statistics.median(samples):.2f} |")


if __name__ == "__main__":
    main()
