"""The generator as an MLflow pyfunc model: a table of requests in, PNG images (base64) out.

Artifacts: ``generator`` = a generator folder (generator.safetensors + generator.json). Loading uses
safetensors, never pickle. Request rows: category (name or index), seed, n, and optional edits.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

MAX_N = 64  # images per request row; bigger asks are refused with a message

INPUT_COLUMNS: list[tuple[str, str, bool]] = [
    # (name, mlflow type, required)
    ("category", "string", True),
    ("seed", "long", False),
    ("n", "long", False),
    ("truncation", "double", False),
]
OUTPUT_COLUMNS: list[tuple[str, str]] = [
    ("image", "string"),
    ("category", "string"),
    ("seed", "long"),
    ("index", "long"),
]


def model_signature() -> ModelSignature:
    inputs = Schema([ColSpec(t, name, required=req) for name, t, req in INPUT_COLUMNS])
    outputs = Schema([ColSpec(t, name) for name, t in OUTPUT_COLUMNS])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example() -> pd.DataFrame:
    return pd.DataFrame([{"category": "0", "seed": 7, "n": 2, "truncation": 1.0}])


def png_base64(image_chw: np.ndarray) -> str:
    from PIL import Image

    arr = image_chw[0] if image_chw.shape[0] == 1 else np.transpose(image_chw, (1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class ProductGANModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from productgan.gan.export import load_generator

        self.generator, self.config = load_generator(context.artifacts["generator"])

    def _category_index(self, value: Any) -> int:
        names = self.config.categories
        text = str(value).strip()
        if text in names:
            return names.index(text)
        if text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
            return int(text)
        raise ValueError(f"unknown category {value!r}; known: {', '.join(names)} (or an index 0..{len(names) - 1})")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from productgan.gan.sample import generate_uint8

        rows = []
        for req in model_input.to_dict(orient="records"):
            idx = self._category_index(req["category"])
            seed = int(req.get("seed") if pd.notna(req.get("seed")) else 0)
            n = int(req.get("n") if pd.notna(req.get("n")) else 1)
            if not 1 <= n <= MAX_N:
                raise ValueError(f"n={n} is out of range; ask for 1..{MAX_N} images per request")
            trunc = req.get("truncation")
            trunc = float(trunc) if trunc is not None and pd.notna(trunc) else None
            images = generate_uint8(self.generator, [idx] * n, seed, self.config.latent_dim, trunc)
            for i, img in enumerate(images):
                name = self.config.categories[idx]
                rows.append({"image": png_base64(img), "category": name, "seed": seed, "index": i})
        return pd.DataFrame(rows, columns=[c for c, _ in OUTPUT_COLUMNS])
