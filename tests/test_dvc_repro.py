"""`dvc repro preprocess` in a throw-away copy of this repository, on a small ingest-shaped data/ folder: stages
re-run on a changed value in params.yaml and on a changed default in the code alike (DVC tracks the effective
settings, params.effective.yaml, which the stage `settings` writes)."""

from __future__ import annotations

import re
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


def test_dvc_repro_preprocess_caches_and_reruns_on_params_and_defaults(tmp_path, cli_env, fmnist_small):
    repo = _copy_repo(tmp_path / "repo")
    # the stages run the copy's code (its defaults are edited below), not this checkout's
    env = {**cli_env, "PYTHONPATH": str(repo), "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site")}
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
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run([*git, "add", "-A"], repo, env)
    _run([*git, "commit", "-qm", "the shipped code and settings"], repo, env)

    out = _run(["dvc", "repro", "preprocess"], repo, env)
    assert "Running stage 'settings'" in out and "Running stage 'preprocess'" in out
    manifest = load_manifest(repo / "prepared")
    assert manifest["dataset_hash"] == dataset_version(repo / "data.dvc")
    assert manifest["counts"]["test"]["total"] >= 100
    assert sum(manifest["counts"][s]["total"] for s in SPLITS) == 300 + 100 + len(photos)
    xs, ys = load_split(repo / "prepared", "test")
    assert xs.shape[1:] == (1, 28, 28) and np.array_equal(xs[:100], xt[:100]) and np.array_equal(ys[:100], yt[:100])
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["preprocess"]["params"]["params.effective.yaml"]["preprocess"]["resolution"] == 28

    again = _run(["dvc", "repro", "preprocess"], repo, env)
    assert "didn't change" in again or "up to date" in again, again
    assert "Running stage" not in again

    # a changed default in the code: DVC sees a changed param and re-runs the stage
    code = repo / "productgan" / "data" / "preprocess.py"
    assert "    resolution: int = 28  #" in code.read_text()
    code.write_text(code.read_text().replace("    resolution: int = 28  #", "    resolution: int = 32  #"))
    diff = _run(["dvc", "params", "diff"], repo, env)
    assert "preprocess.resolution" not in diff  # not yet: the settings stage writes the effective file
    changed = _run(["dvc", "repro", "preprocess"], repo, env)
    assert "Running stage 'settings'" in changed and "Running stage 'preprocess'" in changed
    assert load_split(repo / "prepared", "train")[0].shape[1:] == (1, 32, 32)
    diff = _run(["dvc", "params", "diff"], repo, env)
    assert re.search(r"params\.effective\.yaml\s+preprocess\.resolution\s+28\s+32", diff), diff

    # a value in params.yaml wins over the default, and is a change as well
    (repo / "params.yaml").write_text(yaml.safe_dump({"preprocess": {"resolution": 64}}))
    changed = _run(["dvc", "repro", "preprocess"], repo, env)
    assert "Running stage 'preprocess'" in changed
    assert load_manifest(repo / "prepared")["resolution"] == 64
    # an unrelated setting (train's) re-runs the cheap settings stage only
    (repo / "params.yaml").write_text(yaml.safe_dump({"preprocess": {"resolution": 64}, "train": {"seed": 3}}))
    again = _run(["dvc", "repro", "preprocess"], repo, env)
    assert "Running stage 'settings'" in again and "Running stage 'preprocess'" not in again


def test_dvc_repro_train_reruns_on_model_code_not_on_comments_or_other_code(tmp_path, cli_env, fmnist_small):
    """The train stage tracks the model code's version (what training imports, productgan.lineage), which the
    settings stage writes: a comment in device.py or a README edit re-runs nothing; a statement in device.py (a
    module outside productgan/gan that the trainer imports) re-runs training."""
    repo = _copy_repo(tmp_path / "repo")
    env = {**cli_env, "PYTHONPATH": str(repo), "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    (x, y), (xt, yt) = fmnist_small["train"], fmnist_small["test"]
    write_dataset(repo / "data", fmnist_entries({"train": (x[:200], y[:200]), "test": (xt[:50], yt[:50])}),
                  FMNIST_CATEGORIES)
    tiny = {"steps": 2, "max_minutes": None, "batch_size": 4, "g_channels": 4, "d_channels": 4, "num_threads": 1,
            "log_every": 1, "sample_every": 2, "checkpoint_every": 2, "grid_columns": 2}
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": tiny}))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run(["git", "init", "-q"], repo, env)
    _run(["dvc", "add", "data"], repo, env)
    _run([*git, "add", "-A"], repo, env)
    _run([*git, "commit", "-qm", "tiny"], repo, env)

    first = _run(["dvc", "repro", "train"], repo, env)
    assert "Running stage 'train'" in first
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train"]["params"]
    version = lock["model_code.yaml"]["train"]
    assert len(version) == 16 and lock["params.effective.yaml"]["train"]["steps"] == 2

    device = repo / "productgan" / "device.py"
    device.write_text("# a reviewer's note\n" + device.read_text())
    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nMore words.\n")
    again = _run(["dvc", "repro", "train"], repo, env)
    assert "Running stage 'settings'" in again and "Running stage 'train'" not in again

    device.write_text(device.read_text() + "\nCHANGED = True\n")
    changed = _run(["dvc", "repro", "train"], repo, env)
    assert "Running stage 'train'" in changed and "Running stage 'preprocess'" not in changed
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train"]["params"]
    assert lock["model_code.yaml"]["train"] != version
