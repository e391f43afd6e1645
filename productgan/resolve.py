"""The one generator resolver: a generator folder, a folder holding one, or an MLflow URI -> a local folder.

Used by ``productgan.load`` / generate, evaluate and the served model. A URI (``models:/product-gan@champion``,
``runs:/<id>/generator``, ``s3://...``) is downloaded with MLflow, which is imported only then.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from productgan.gan.export import CONFIG
from productgan.redact import redact


def is_model_uri(text: str) -> bool:
    return "://" in text or text.startswith(("models:/", "runs:/"))


def find_generator_dir(root: str | os.PathLike[str]) -> Path:
    """``root`` itself when it holds generator.json, else the shallowest folder below it that does."""
    root = Path(root)
    if root.name == CONFIG and root.is_file():  # a URI that names the config file itself
        return root.parent
    if (root / CONFIG).is_file():
        return root
    found = sorted(root.rglob(CONFIG), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise FileNotFoundError(
            f"{root}: no {CONFIG} in it or below it; pass a generator folder (`productgan train --out`) or "
            "a pyfunc model logged with artifacts={'generator': <that folder>}"
        )
    return found[0].parent


def resolve_generator_dir(ref: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None) -> Path:
    """A local generator folder for a folder or an MLflow URI (downloaded into ``dst``, else a new temp dir)."""
    text = str(ref)
    if Path(text).exists():
        return find_generator_dir(text)
    if not is_model_uri(text):
        raise FileNotFoundError(
            redact(f"{text}: no such folder, and not an MLflow URI (models:/name@alias, runs:/...)")
        )
    import mlflow
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=None if dst is None else str(dst))
    except Exception as exc:  # mlflow raises several types; the user needs the URI and the tracking store
        raise FileNotFoundError(redact(
            f"{text}: no generator could be downloaded from MLflow (tracking URI {mlflow.get_tracking_uri()}): "
            f"{exc}; check MLFLOW_TRACKING_URI and that the model/alias exists (`productgan promote`)"
        )) from exc
    return find_generator_dir(local)


@contextmanager
def local_generator_dir(ref: str | os.PathLike[str]) -> Iterator[Path]:
    """``resolve_generator_dir`` for the length of a block: a download goes to a temp folder removed after."""
    if Path(str(ref)).exists() or not is_model_uri(str(ref)):
        yield resolve_generator_dir(ref)
        return
    with tempfile.TemporaryDirectory(prefix="productgan-model-") as tmp:
        yield resolve_generator_dir(ref, tmp)
