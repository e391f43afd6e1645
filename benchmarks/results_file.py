"""Where the benchmarks keep their numbers: benchmarks/results/<kind>_<name>.json, each with the command that
made it, the machine it ran on and when (RESULTS.md quotes these files)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU count and model, load, torch and Python versions, GPU name: what a benchmark's numbers depend on."""
    from productgan.device import cpu_has_native_bf16, cpuinfo

    info: dict[str, Any] = {
        "nproc": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
        "load_average": [round(v, 2) for v in os.getloadavg()], "torch_threads": torch.get_num_threads(),
    }
    if cpuinfo("model name"):
        info["cpu"] = cpuinfo("model name")
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["cpu_native_bf16"] = cpu_has_native_bf16()
    return info


def command() -> str:
    """The command line that is running, as `python -m benchmarks.<module> ARGS`."""
    return " ".join([f"python -m benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]])


def save_result(kind: str, name: str, doc: dict[str, Any]) -> Path:
    """Write ``doc`` with its command, machine and time to results/<kind>_<name>.json; returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{kind}_{name}.json"
    doc = {"command": command(), "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M"), **doc}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def replace_section(markdown: Path, heading: str, text: str) -> None:
    """Put ``text`` (starting with ``heading``, a ``## `` line) in place of that section of ``markdown`` (up to the
    next ``## ``), or at its end when it has none."""
    old = markdown.read_text() if markdown.is_file() else "# Benchmarks\n"
    start = old.find(heading + "\n")
    if start >= 0:
        end = old.find("\n## ", start + 1)
        old = old[:start].rstrip() + ("\n\n" + old[end + 1 :] if end >= 0 else "")
    markdown.write_text(old.rstrip() + "\n\n" + text.rstrip() + "\n")
