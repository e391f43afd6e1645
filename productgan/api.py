"""Python use of a trained generator: ``productgan.load(uri).generate(category=..., n=..., seed=..., color=...)``.

``load`` takes a generator folder (the output of ``productgan train``), any folder holding one (a
downloaded pyfunc model), or an MLflow URI (``models:/product-gan@champion``, ``runs:/<id>/generator``).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from productgan.edit import EditError, Edits, apply_edits
from productgan.gan.config import GeneratorConfig
from productgan.gan.export import CONFIG, load_generator
from productgan.gan.sample import latents, to_uint8
from productgan.render import to_pil

log = logging.getLogger(__name__)

MAX_SEED = 2**53  # seeds are exact in a double (JSON numbers, the server's request columns) up to here


@dataclass
class GenerateParams:
    """params.yaml section ``generate`` (defaults equal to the shipped file)."""

    n: int = 16  # images per category
    seed: int = 0
    truncation: float | None = None  # (0, 1]: less variety, more typical products; null = off
    steps: int = 8  # frames of an interpolation
    cell: int = 112  # grid cell size (px): small generated images are upscaled so labels are legible
    max_n: int = 64  # most images per request (row) the API and the server make
    max_images: int = 256  # most images one server request (all rows) may ask for


class RequestError(ValueError):
    """A generation request that cannot be served (unknown category, n out of range, bad edit ...)."""


def _is_uri(text: str) -> bool:
    return "://" in text or text.startswith(("models:/", "runs:/"))


def find_generator_dir(root: str | os.PathLike[str]) -> Path:
    """``root`` itself when it holds generator.json, else the shallowest folder below it that does."""
    root = Path(root)
    if (root / CONFIG).is_file():
        return root
    found = sorted(root.rglob(CONFIG), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise FileNotFoundError(
            f"{root}: no {CONFIG} in it or below it; pass a generator folder (`productgan train --out`) or "
            "a pyfunc model logged with artifacts={'generator': <that folder>}"
        )
    return found[0].parent


def resolve_generator_dir(model_uri_or_dir: str | os.PathLike[str], dst: str | None = None) -> Path:
    """A local generator folder for a folder or an MLflow URI (downloaded into ``dst`` or a temp dir)."""
    text = str(model_uri_or_dir)
    if Path(text).exists():
        return find_generator_dir(text)
    if not _is_uri(text):
        from productgan.redact import redact

        raise FileNotFoundError(
            redact(f"{text}: no such folder, and not an MLflow URI (models:/name@alias, runs:/...)")
        )
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=dst)
    except Exception as exc:  # mlflow raises several types; the user needs the URI and the tracking store
        import mlflow

        from productgan.redact import redact

        raise FileNotFoundError(redact(
            f"{text}: could not download from MLflow (tracking URI {mlflow.get_tracking_uri()}): {exc}; "
            "check MLFLOW_TRACKING_URI and that the model/alias exists (`productgan promote`)"
        )) from exc
    return find_generator_dir(local)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: stays on the shell where Gaussian latents live (lerp would pass
    through low-norm, atypical latents halfway)."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1.0, 1.0))
    if float(omega) < 1e-6:
        return (1 - t) * a + t * b
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


class ProductGenerator:
    """A loaded generator that makes and edits product images by category and seed."""

    def __init__(
        self,
        generator: torch.nn.Module,
        config: GeneratorConfig,
        source: str = "",
        params: GenerateParams | None = None,
    ) -> None:
        self.generator = generator
        self.config = config
        self.source = source
        self.params = params or GenerateParams()

    @property
    def categories(self) -> list[str]:
        return list(self.config.categories)

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.config.meta)

    def __repr__(self) -> str:
        return f"ProductGenerator({self.source!r}, {len(self.categories)} categories, {self.config.resolution}px)"

    # --- validation ----------------------------------------------------------------------------------

    def category_index(self, category: str | int) -> int:
        """A category name (exact, else case-insensitive) or index -> its index; RequestError if unknown."""
        names = self.categories
        if isinstance(category, bool):
            category = str(category)
        if isinstance(category, int | np.integer):
            if 0 <= int(category) < len(names):
                return int(category)
        else:
            text = str(category).strip()
            if text in names:
                return names.index(text)
            folded = [n.casefold() for n in names]
            if folded.count(text.casefold()) == 1:
                return folded.index(text.casefold())
            if text.isdigit() and 0 <= int(text) < len(names):
                return int(text)
        raise RequestError(
            f"unknown category {category!r}; known: {', '.join(names)} (or an index 0..{len(names) - 1})"
        )

    def check_request(self, n: int, seed: int, truncation: float | None) -> tuple[int, int, float | None]:
        try:
            n_i, seed_i = int(n), int(seed)
        except (TypeError, ValueError):
            raise RequestError(f"n and seed must be whole numbers, got n={n!r}, seed={seed!r}") from None
        if n_i != float(n) or seed_i != float(seed):
            raise RequestError(f"n and seed must be whole numbers, got n={n!r}, seed={seed!r}")
        if not 1 <= n_i <= self.params.max_n:
            raise RequestError(f"n={n_i} is out of range; ask for 1..{self.params.max_n} images per request")
        if not 0 <= seed_i <= MAX_SEED:
            raise RequestError(f"seed={seed_i} is out of range; use 0..2**53")
        if truncation is not None:
            truncation = float(truncation)
            if math.isnan(truncation):
                truncation = None
            elif not 0 < truncation <= 1:
                raise RequestError(f"truncation={truncation} is out of range; use (0, 1] (1 = off)")
        return n_i, seed_i, truncation

    @staticmethod
    def parse_edits(edits: Edits | dict[str, Any] | None) -> Edits:
        if isinstance(edits, Edits):
            return edits
        try:
            return Edits.from_mapping(dict(edits or {}))
        except EditError as exc:
            raise RequestError(str(exc)) from None

    # --- generation ----------------------------------------------------------------------------------

    @torch.no_grad()
    def _render(
        self, z: torch.Tensor, labels: Sequence[int], mix_to: Sequence[int] | None = None, t: Sequence[float] = ()
    ) -> np.ndarray:
        """uint8 (N, C, H, W) for latents ``z`` and ``labels``; with ``mix_to`` the class embedding of each
        row is (1 - t) * embed(label) + t * embed(mix_to)."""
        device = next(self.generator.parameters()).device
        labels_t = torch.as_tensor(list(labels), dtype=torch.long, device=device)
        if mix_to is None:
            return to_uint8(self.generator(z.to(device), labels_t))
        other = torch.as_tensor(list(mix_to), dtype=torch.long, device=device)
        weights = torch.as_tensor(list(t), dtype=torch.float32, device=device)[:, None]
        with _mixed_embedding(self.generator, other, weights):
            return to_uint8(self.generator(z.to(device), labels_t))

    def generate_arrays(
        self, category: str | int, n: int = 1, seed: int = 0, truncation: float | None = None
    ) -> np.ndarray:
        """The raw generator output for one category: uint8 (n, C, H, W), seeded."""
        idx = self.category_index(category)
        n, seed, truncation = self.check_request(n, seed, truncation)
        return self._render(latents(seed, n, self.config.latent_dim, truncation), [idx] * n)

    def generate(
        self,
        category: str | int,
        n: int = 1,
        seed: int = 0,
        truncation: float | None = None,
        edits: Edits | dict[str, Any] | None = None,
        **edit_kwargs: Any,
    ) -> list[Image.Image]:
        """``n`` images of ``category`` from ``seed``, with edits (``color='#aa3355'``, ``rotate=15`` ...).

        The same (category, n, seed, truncation) gives the same images.
        """
        todo = self.parse_edits({**(_as_dict(edits)), **edit_kwargs})
        arrays = self.generate_arrays(category, n, seed, truncation)
        return [apply_edits(to_pil(a), todo) for a in arrays]

    def interpolate(
        self,
        category: str | int | None = None,
        seeds: tuple[int, int] | None = None,
        categories: tuple[str | int, str | int] | None = None,
        seed: int = 0,
        steps: int | None = None,
        truncation: float | None = None,
        edits: Edits | dict[str, Any] | None = None,
        **edit_kwargs: Any,
    ) -> list[Image.Image]:
        """``steps`` images from one end to the other: between two ``seeds`` (slerp of the latents, one
        ``category``), between two ``categories`` (mix of the class embeddings, one ``seed``), or both.

        Generators without an ``embed`` class embedding fall back to a pixel cross-fade between the two
        categories' images of the same latent (logged as a warning).
        """
        steps = int(steps or self.params.steps)
        if not 2 <= steps <= self.params.max_n:
            raise RequestError(f"steps={steps} is out of range; use 2..{self.params.max_n}")
        if seeds is None and categories is None:
            raise RequestError("say what to interpolate: seeds=(a, b) and/or categories=(A, B)")
        if categories is not None:
            cat_a, cat_b = (self.category_index(c) for c in categories)
        elif category is not None:
            cat_a = cat_b = self.category_index(category)
        else:
            raise RequestError("interpolating seeds needs a category")
        seed_a, seed_b = seeds if seeds is not None else (seed, seed)
        _, seed_a, truncation = self.check_request(1, seed_a, truncation)
        _, seed_b, _ = self.check_request(1, seed_b, None)
        todo = self.parse_edits({**_as_dict(edits), **edit_kwargs})

        ts = [i / (steps - 1) for i in range(steps)]
        dim = self.config.latent_dim
        za, zb = latents(seed_a, 1, dim, truncation)[0], latents(seed_b, 1, dim, truncation)[0]
        z = torch.stack([slerp(za, zb, t) for t in ts])
        if cat_a == cat_b:
            arrays = self._render(z, [cat_a] * steps)
        elif _class_embedding(self.generator) is not None:
            arrays = self._render(z, [cat_a] * steps, mix_to=[cat_b] * steps, t=ts)
        else:
            log.warning("generator %s has no class embedding `embed`: cross-fading pixels", type(self.generator))
            a = self._render(z, [cat_a] * steps).astype(np.float32)
            b = self._render(z, [cat_b] * steps).astype(np.float32)
            w = np.asarray(ts, np.float32)[:, None, None, None]
            arrays = ((1 - w) * a + w * b).round().astype(np.uint8)
        return [apply_edits(to_pil(a), todo) for a in arrays]


def _as_dict(edits: Edits | dict[str, Any] | None) -> dict[str, Any]:
    if edits is None:
        return {}
    if isinstance(edits, Edits):
        return {k: v for k, v in vars(edits).items() if v is not None and v is not False}
    return dict(edits)


def _class_embedding(generator: torch.nn.Module) -> torch.nn.Embedding | None:
    embed = getattr(generator, "embed", None)
    return embed if isinstance(embed, torch.nn.Embedding) else None


@contextmanager
def _mixed_embedding(generator: torch.nn.Module, other: torch.Tensor, weights: torch.Tensor) -> Iterator[None]:
    """While active, ``generator.embed(labels)`` returns (1 - w) * embed(labels) + w * embed(other): the
    generator itself is untouched, so any architecture that looks its class up once through ``embed``
    can be interpolated between classes."""
    embed = _class_embedding(generator)
    if embed is None:
        raise RequestError("this generator has no class embedding `embed` to interpolate")

    def hook(module: torch.nn.Embedding, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return (1 - weights) * output + weights * torch.nn.functional.embedding(other, module.weight)

    handle = embed.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def load(
    model_uri_or_dir: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    params: GenerateParams | None = None,
    dst: str | None = None,
) -> ProductGenerator:
    """A ProductGenerator from a generator folder, a folder holding one, or an MLflow model/run URI.

    URIs are downloaded into ``dst``, else into a temporary folder removed once the weights are loaded.
    """
    if dst is None and _is_uri(str(model_uri_or_dir)) and not Path(str(model_uri_or_dir)).exists():
        with tempfile.TemporaryDirectory(prefix="productgan-model-") as tmp:
            return load(model_uri_or_dir, device, params, dst=tmp)
    folder = resolve_generator_dir(model_uri_or_dir, dst)
    generator, config = load_generator(folder, device)
    return ProductGenerator(generator, config, source=str(model_uri_or_dir), params=params)
