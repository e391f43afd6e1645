"""The generator as an MLflow pyfunc model: a table of requests in, PNG images (base64) out.

Artifacts: ``generator`` = a generator folder (generator.safetensors + generator.json). Loading uses
safetensors, never pickle. Request rows: ``category`` (name or index, as text), optional ``seed``, ``n``,
``truncation``, ``latent`` (a projected photo's latent, "0.12,-0.3,..." with latent_dim numbers, instead of
the seed), latent edits (``to_category``, ``interpolate_to`` (a seed: n frames), ``direction``, ``strength``;
see productgan.serve.edit_request.LatentEdits) and image edits (``color``, ``hue_shift``, ``saturation``,
``brightness``, ``scale``, ``rotate``, ``flip``, ``size``, ``background``; see productgan.serve.edit.Edits), latent
edits first. Output rows, one per image: ``image`` (base64 PNG), ``category`` (name), ``seed``, ``index``
(0..n-1 within its request).

A bad request raises MlflowException(INVALID_PARAMETER_VALUE): the scoring server answers HTTP 400 with
the message (which request, what is wrong, what is allowed) and goes on serving.
Limits come from GenerateParams (max_n, max_images, max_megapixels), overridable with log_model(model_config={...})
or at load (`productgan serve` passes params.yaml's generate section).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from productgan.serve.api import GenerateParams
from productgan.serve.edit_request import EditError, Edits, LatentEdits

log = logging.getLogger(__name__)
MAX_N = GenerateParams.max_n  # images per request row; bigger asks are refused with a message

# Edits as request columns: numbers are doubles (a row that leaves one out makes the column float/NaN),
# flip is "any" because the server casts a boolean column with an absent cell (NaN) to True.
_COLUMN_TYPES = {str: "string", float: "double", int: "double", bool: "any"}
EDIT_COLUMNS: list[tuple[str, str]] = [(name, _COLUMN_TYPES[kind]) for name, kind, _ in Edits.fields()]
# interpolate_to is a seed here (a number; a photo only on the command line)
LATENT_EDIT_COLUMNS: list[tuple[str, str]] = [
    (name, "double" if name == "interpolate_to" else _COLUMN_TYPES[kind]) for name, kind, _ in LatentEdits.fields()
]
INPUT_COLUMNS: list[tuple[str, str, bool]] = [
    # (name, mlflow type, required)
    ("category", "string", True),
    # Whole numbers declared as doubles: when one row of a request leaves seed out, pandas turns the
    # column into floats (NaN) and the server refuses that for a "long" column. JSON integers are cast
    # to double by the server; predict checks they are whole. (A Python DataFrame must hold floats.)
    ("seed", "double", False),
    ("n", "double", False),
    ("truncation", "double", False),
    ("latent", "string", False),
    *[(name, t, False) for name, t in LATENT_EDIT_COLUMNS],
    *[(name, t, False) for name, t in EDIT_COLUMNS],
]
OUTPUT_COLUMNS: list[tuple[str, str]] = [
    ("image", "string"),
    ("category", "string"),
    ("seed", "long"),
    ("index", "long"),
]


def _type(name: str) -> Any:
    return AnyType() if name == "any" else name


def model_signature() -> ModelSignature:
    inputs = Schema([ColSpec(_type(t), name, required=req) for name, t, req in INPUT_COLUMNS])
    outputs = Schema([ColSpec(t, name) for name, t in OUTPUT_COLUMNS])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example() -> pd.DataFrame:
    return pd.DataFrame([{"category": "0", "seed": 7.0, "n": 2.0, "truncation": 1.0}])


def png_base64(image: Any) -> str:
    """A PNG (base64 text) of a PIL image or a uint8 (C, H, W) array."""
    from productgan.render import png_base64 as _png_base64
    from productgan.render import to_pil

    return _png_base64(image if not isinstance(image, np.ndarray) else to_pil(image))


def _invalid(message: str) -> Exception:
    """HTTP 400 with ``message``, and no stack trace in the reply."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _failed(message: str) -> Exception:
    """HTTP 500 with ``message``: the trace goes to the server's log, never into the reply."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

    return MlflowException(message, error_code=INTERNAL_ERROR)


def _value(row: dict[str, Any], key: str) -> Any:
    """A request cell, None when absent or empty (pandas fills absent optional cells with NaN/None)."""
    value = row.get(key)
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if isinstance(value, np.generic) else value


class ProductGANModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from productgan.serve.api import load

        config = dict(getattr(context, "model_config", None) or {})
        known = {f.name for f in dataclasses.fields(GenerateParams)}
        params = GenerateParams(**{k: v for k, v in config.items() if k in known})
        self.product = load(context.artifacts["generator"], device=config.get("device", "cpu"), params=params)
        self.generator, self.config = self.product.generator, self.product.config

    def _parse(self, row: dict[str, Any]) -> dict[str, Any]:
        from productgan.serve.api import RequestError

        category = _value(row, "category")
        if category is None:
            raise RequestError("category is missing; give a category name or index")
        seed, n, truncation = (_value(row, k) for k in ("seed", "n", "truncation"))
        req = {
            "category": self.product.categories[self.product.category_index(category)],
            "seed": 0 if seed is None else seed,
            "n": 1 if n is None else n,
            "truncation": truncation,
        }
        req["n"], req["seed"], req["truncation"] = self.product.check_request(req["n"], req["seed"], truncation)
        latent_edits = {name: _value(row, name) for name, _ in LATENT_EDIT_COLUMNS}
        req["latent_edits"] = self.product.parse_latent_edits(latent_edits)
        req["latent"] = _value(row, "latent")
        if req["latent"] is not None:
            self.product.check_latent(req["latent"])
        req["edits"] = self.product.parse_edits({name: _value(row, name) for name, _ in EDIT_COLUMNS})
        return req

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from productgan.render import png_base64 as encode
        from productgan.serve.api import RequestError

        if isinstance(model_input, pd.DataFrame):
            records = model_input.to_dict(orient="records")
        elif isinstance(model_input, dict):
            records = [model_input]
        else:
            records = list(model_input)
        if not records:
            raise _invalid("no requests: send at least one row with a category")
        def where(number: int) -> str:
            return f"request {number}: " if len(records) > 1 else ""

        # validate every row before generating anything, so a bad row costs no compute
        requests = []
        for number, row in enumerate(records):
            try:
                requests.append(self._parse(dict(row)))
            except (RequestError, EditError) as exc:
                raise _invalid(f"{where(number)}{exc}") from None
        total, limit = sum(r["n"] for r in requests), self.product.params.max_images
        if total > limit:
            raise _invalid(f"{total} images asked in one call; the limit is {limit}: split the request")
        try:
            self.product.check_pixels(sum(self.product.output_pixels(r["n"], r["edits"]) for r in requests))
        except RequestError as exc:
            raise _invalid(str(exc)) from None
        rows = []
        for number, req in enumerate(requests):
            try:
                # each image is edited, encoded and dropped in turn: one full-size image in memory at a time
                images = self.product.generate_iter(req["category"], req["n"], req["seed"], req["truncation"],
                                                    req["edits"], latent_edits=req["latent_edits"],
                                                    latent=req["latent"])
                for i, image in enumerate(images):
                    rows.append({"image": encode(image), "category": req["category"], "seed": req["seed"],
                                 "index": i})
            except (RequestError, EditError) as exc:
                raise _invalid(f"{where(number)}{exc}") from None
            except Exception as exc:  # a fault of ours, not the request's: logged with its trace, replied without
                log.exception("productgan model: %srequest %s failed", where(number), req)
                raise _failed(f"{where(number)}the model failed ({type(exc).__name__}); see the server's log") from None
        return pd.DataFrame(rows, columns=[c for c, _ in OUTPUT_COLUMNS])
