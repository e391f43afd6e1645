"""Shared by the tests of a shop's own photo shapes (cut-outs, non-square frames): one tiny run of every step
from a folder of photos, and the served model's answer to one request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image


def tiny_run_params(root: Path, **preprocess) -> dict:
    """params.yaml in ``root`` for a 2-step, 4-channel-wide run at 32 px and a seconds-long evaluate."""
    doc = {
        "preprocess": {"resolution": 32, "val_fraction": 0.0, "test_fraction": 0.2, **preprocess},
        "train": {"recipe": "default", "max_minutes": None, "steps": 2, "batch_size": 4, "g_channels": 4,
                  "d_channels": 4, "checkpoint_every": 2, "log_every": 1, "sample_every": 2, "grid_columns": 2,
                  "precision": "fp32"},
        "evaluate": {"metrics": ["fd_domain", "class_accuracy"], "n": 16, "batch_size": 16, "classifier_steps": 20,
                     "classifier_batch_size": 8, "real_split": "train", "grid_per_category": 2},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(doc))
    return doc


def run(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """`productgan ARGS` in ``cwd``; fails the test with its stderr when it fails."""
    res = subprocess.run([sys.executable, "-m", "productgan", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return res


def served_images(generator_dir: Path, request: dict) -> list[Image.Image]:
    """The MLflow pyfunc model of ``generator_dir`` answering one request row: its PNGs, decoded."""
    import pandas as pd

    from productgan.render import decode_png_base64
    from productgan.serve.pyfunc import ProductGANModel

    class Context:
        artifacts = {"generator": str(generator_dir)}
        model_config: dict = {}

    model = ProductGANModel()
    model.load_context(Context())
    return [decode_png_base64(b) for b in model.predict(None, pd.DataFrame([request]))["image"]]
