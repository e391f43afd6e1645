"""`dvc repro preprocess` in a throw-away copy of this repository, on a small ingest-shaped data/ folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import FMNIST_CATEGORIES, REPO
from dataset_builder import Entry, encode, fmnist_entries, product_photo, write_dataset

from productgan.data.arrays import SPLITS, load_manifest, load_split
from productgan.lineage import dataset_version

pytestmark = pytest.mark.slow


def _copy_repo(dest: Path) -> Path:
    """The checkout's files (tracked and new, not ignored), without its dataset or lock: a fresh clone."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if rel in ("data.dvc", "dvc.lock") or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


def test_dvc_repro_preprocess_caches_and_reruns_on_params(tmp_path, cli_env, fmnist_small):
    repo = _copy_repo(tmp_path / "repo")
    env = {**cli_env, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site")}
    _run(["git", "init", "-q"], repo, env)

    (x, y), (xt, yt) = fmnist_small["train"], fmnist_small["test"]
    rng = np.random.default_rng(0)
    photos = [
        Entry(f"shop/Bag/bag{i}.{ext}", encode(product_photo(rng, (50 + 7 * i, 40)), fmt), category="Bag")
        for i, (fmt, ext) in enumerate([("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")] * 4)
    ]
    entries = fmnist_entries({"train": (x[:300], y[:300]), "test": (xt[:100], yt[:100])}) + photos
    write_dataset(repo / "data", entries, FMNIST_CATEGORIES)
    _run(["dvc", "add", "data"], repo, env)

    out = _run(["dvc", "repro", "preprocess"], repo, env)
    assert "Running stage 'preprocess'" in out
    manifest = load_manifest(repo / "prepared")
    assert manifest["dataset_hash"] == dataset_version(repo / "data.dvc")
    assert manifest["counts"]["test"]["total"] >= 100
    assert sum(manifest["counts"][s]["total"] for s in SPLITS) == 300 + 100 + len(photos)
    xs, ys = load_split(repo / "prepared", "test")
    assert xs.shape[1:] == (1, 28, 28) and np.array_equal(xs[:100], xt[:100]) and np.array_equal(ys[:100], yt[:100])
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["preprocess"]["params"]["params.yaml"]["preprocess"]["resolution"] == 28

    again = _run(["dvc", "repro", "preprocess"], repo, env)
    assert "didn't change" in again or "up to date" in again, again
    assert "Running stage" not in again

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["preprocess"]["resolution"] = 32
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = _run(["dvc", "repro", "preprocess"], repo, env)
    assert "Running stage 'preprocess'" in changed
    assert load_split(repo / "prepared", "train")[0].shape[1:] == (1, 32, 32)
    assert load_manifest(repo / "prepared")["resolution"] == 32
