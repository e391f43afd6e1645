"""What ``productgan generate`` makes, as named files: one PNG per image, a labelled ``grid.png`` and
``generate.json`` (what made them). The CLI writes them into a folder, the studio into a ZIP: the same
bytes either way, because both call ``generate_files``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any

from productgan.io import dumps_json
from productgan.redact import redact
from productgan.render import labelled_grid, png_bytes, safe_name
from productgan.serve.api import GenerateParams, ProductGenerator
from productgan.serve.edit import Edits
from productgan.serve.edit_request import LatentEdits

GRID = "grid.png"
SETTINGS = "generate.json"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same settings give the same ZIP bytes


def image_name(category: str, seed: int, index: int) -> str:
    """The file name of one generated image: ``<category>_<seed>_<i>.png`` (category made file-name safe)."""
    return f"{safe_name(category)}_{seed}_{index}.png"


def generate_files(
    product: ProductGenerator, categories: Sequence[str], params: GenerateParams, edits: Edits, model: str,
    latent_edits: LatentEdits | None = None, latent: Any = None,
) -> dict[str, bytes]:
    """``params.n`` images of each category (names as the generator spells them) -> {file name: bytes}:
    ``<category>_<seed>_<i>.png`` per image, then grid.png, then generate.json. ``latent_edits`` go through
    the generator before the image ``edits``; ``latent`` (a projected photo's) replaces the seed's latents."""
    files: dict[str, bytes] = {}
    images, labels = [], []
    moves = latent_edits or LatentEdits()
    for name in categories:
        made = product.generate(name, params.n, params.seed, params.truncation, edits, latent_edits=moves,
                                latent=latent)
        for i, image in enumerate(made):
            files[image_name(name, params.seed, i)] = png_bytes(image)
            images.append(image)
            labels.append(f"{name} #{i}")
    settings: dict[str, Any] = {
        "model": redact(model),
        "generator": product.meta,
        "categories": list(categories),
        "n": params.n,
        "seed": params.seed,
        "truncation": params.truncation,
        "edits": {k: v for k, v in vars(edits).items() if v not in (None, False)},
        **({"latent_edits": {k: v for k, v in vars(moves).items() if v is not None}} if not moves.is_empty() else {}),
        **({"latent": "given"} if latent is not None else {}),
        "files": list(files),
    }
    files[GRID] = png_bytes(labelled_grid(images, labels, cols=params.n, cell=params.cell))
    files[SETTINGS] = dumps_json(settings).encode("utf-8")
    return files


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """The files as one ZIP (PNGs stored, text deflated), members in the given order with fixed dates."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buf.getvalue()
