"""Python use of a trained generator: ``productgan.load(uri).generate(category=..., n=..., seed=..., color=...)``.

``load`` takes a generator folder (the output of ``productgan train``), any folder holding one (a
downloaded pyfunc model), or an MLflow URI (``models:/product-gan@champion``, ``runs:/<id>/generator``).

Edits through the generator: ``generate(..., to_category=..., direction=K, strength=S, interpolate_to=SEED)``
from a seed, or from ``latent=`` a projected photo's latent (``project(photo, category)``); image edits
(``color=...``) apply after them. ``directions()`` are the generator's principal directions (SeFa).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from productgan.gan.config import GeneratorConfig
from productgan.gan.export import load_generator
from productgan.gan.sample import generate_uint8, latents, to_uint8
from productgan.params import require
from productgan.render import to_pil
from productgan.resolve import local_generator_dir, resolve_generator_dir
from productgan.serve.edit import EditError, Edits, apply_edits
from productgan.serve.edit_request import MAX_SEED, LatentEdits, is_digits, whole_number
from productgan.serve.latent import Directions, along, sefa_directions, slerp

if TYPE_CHECKING:
    from productgan.serve.project import Projection, ProjectParams

log = logging.getLogger(__name__)

__all__ = ["MAX_SEED", "GenerateParams", "ProductGenerator", "RequestError", "load", "slerp"]
MAX_LATENT = 10.0  # largest |component| of a latent sent in a request (Gaussian latents stay well inside)
_IMAGE_EDITS = {name for name, _, _ in Edits.fields()}
_LATENT_EDITS = {name for name, _, _ in LatentEdits.fields()}


@dataclass
class GenerateParams:
    """params.yaml section ``generate``: every default (params.yaml states what differs)."""

    n: int = 16  # images per category
    seed: int = 0
    truncation: float | None = None  # (0, 1]: less variety, more typical products; null = off
    steps: int = 8  # frames of an interpolation
    cell: int = 112  # grid cell size (px): small generated images are upscaled so labels are legible
    max_n: int = 64  # most images per request (row) the API and the server make
    max_images: int = 256  # most images one server request (all rows) may ask for
    # most output pixels one request may make, in millions: images x output side^2 (the `size` edit, else the
    # generator's resolution); bounds the memory a request holds (~4 bytes a pixel)
    max_megapixels: float = 64.0
    directions: int = 10  # principal latent directions offered (SeFa); `productgan directions` shows them

    def __post_init__(self) -> None:
        for key in ("n", "steps", "cell", "max_n", "max_images", "directions"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(self.truncation is None or 0 < self.truncation <= 1, "truncation",
                f"must be in (0, 1] or null, got {self.truncation}")
        require(self.max_megapixels > 0, "max_megapixels", f"must be > 0, got {self.max_megapixels}")


class RequestError(ValueError):
    """A generation request that cannot be served (unknown category, n out of range, bad edit ...)."""


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
        self._directions: Directions | None = None
        self._directions_once = threading.Lock()  # concurrent first callers compute them once

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
            if is_digits(text) and 0 <= int(text) < len(names):
                return int(text)
        raise RequestError(
            f"unknown category {category!r}; known: {', '.join(names)} (or an index 0..{len(names) - 1})"
        )

    def check_request(self, n: int, seed: int, truncation: float | None) -> tuple[int, int, float | None]:
        try:
            n_i, seed_i = whole_number(n, "n"), whole_number(seed, "seed")
        except EditError:
            raise RequestError(f"n and seed must be whole numbers, got n={n!r}, seed={seed!r}") from None
        if not 1 <= n_i <= self.params.max_n:
            raise RequestError(f"n={n_i} is out of range; ask for 1..{self.params.max_n} images per request")
        if not 0 <= seed_i <= MAX_SEED:
            raise RequestError(f"seed={seed_i} is out of range; use 0..2**53")
        if truncation is not None:
            try:
                truncation = float(truncation)
            except (TypeError, ValueError, OverflowError):
                raise RequestError(f"truncation={truncation!r} is not a number; use (0, 1] (1 = off)") from None
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

    def parse_latent_edits(self, edits: LatentEdits | dict[str, Any] | None) -> LatentEdits:
        """Latent edits checked against this generator: a known category, a direction it offers, a seed."""
        try:
            todo = edits if isinstance(edits, LatentEdits) else LatentEdits.from_mapping(dict(edits or {}))
        except EditError as exc:
            raise RequestError(str(exc)) from None
        if todo.to_category is not None:
            self.category_index(todo.to_category)
        if todo.direction is not None and todo.direction >= self.params.directions:
            raise RequestError(f"direction={todo.direction} is out of range; this generator offers directions "
                               f"0..{self.params.directions - 1} (see `productgan directions`)")
        if todo.interpolate_to is not None and todo.interpolate_seed() is None:
            raise RequestError(f"interpolate_to={todo.interpolate_to!r} is not a seed; use a whole number 0..2**53")
        return todo

    def check_latent(self, latent: Any) -> torch.Tensor:
        """A latent from a request (a projected photo's): ``latent_dim`` finite numbers, as an array, a list
        or text ("0.1,-0.3,..." or "[0.1, -0.3, ...]")."""
        try:
            if isinstance(latent, str):
                values = [float(v) for v in latent.strip().strip("[]").replace(",", " ").split()]
            else:
                values = [float(v) for v in np.asarray(latent, dtype=np.float64).reshape(-1)]
        except (TypeError, ValueError):
            raise RequestError("latent must be a list of numbers (the latent.npy of `productgan project`)") from None
        dim = self.config.latent_dim
        if len(values) != dim:
            raise RequestError(f"latent has {len(values)} numbers; this generator's latents have {dim}")
        z = torch.tensor(values, dtype=torch.float32)
        if not torch.isfinite(z).all() or float(z.abs().max()) > MAX_LATENT:
            raise RequestError(f"latent values must be finite and within ±{MAX_LATENT:g}")
        return z[None]

    def output_pixels(self, n: int, edits: Edits) -> int:
        """Pixels of ``n`` images made with ``edits``: generated images are square, ``size`` sets their side."""
        side = edits.size or self.config.resolution
        return int(n) * side * side

    def check_pixels(self, pixels: int) -> None:
        """RequestError when a request would make more than ``max_megapixels`` million output pixels."""
        limit = self.params.max_megapixels
        if pixels > limit * 1e6:
            raise RequestError(
                f"{pixels / 1e6:.4g} megapixels asked in one request (images x output size^2); the limit is "
                f"{limit:g} megapixels (params generate.max_megapixels): ask for fewer images or a smaller size"
            )

    @staticmethod
    def split_edits(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Keyword edits as (image edits, latent edits); a name that is neither is an image edit (its error)."""
        latent = {k: v for k, v in values.items() if k in _LATENT_EDITS}
        return {k: v for k, v in values.items() if k not in _LATENT_EDITS}, latent

    # --- the latent space ----------------------------------------------------------------------------

    def directions(self) -> Directions:
        """The generator's principal latent directions (SeFa), computed once per loaded generator."""
        with self._directions_once:
            if self._directions is None:
                try:
                    self._directions = sefa_directions(self.generator, self.config.latent_dim, self.params.directions)
                except ValueError as exc:
                    raise RequestError(str(exc)) from None
        return self._directions

    def render_latents(
        self, z: torch.Tensor, category: str | int, latent_edits: LatentEdits | dict[str, Any] | None = None,
        frames: int | None = None, truncation: float | None = None, end: torch.Tensor | None = None,
    ) -> np.ndarray:
        """uint8 (N, C, H, W) of latents ``z`` (N, latent_dim) drawn as ``category`` with ``latent_edits``:
        a step along a direction, another category, or ``frames`` images from z[0] to the latent of the
        ``interpolate_to`` seed (or to ``end``, e.g. a second projected photo's latent), both ends with the same
        direction step and the category moving to ``to_category``."""
        idx = self.category_index(category)
        todo = self.parse_latent_edits(latent_edits)
        target = self.category_index(todo.to_category) if todo.to_category is not None else idx
        seed = todo.interpolate_seed()
        if end is not None:
            end = end.reshape(-1)
        elif seed is not None:
            end = latents(seed, 1, self.config.latent_dim, truncation)[0]
        if todo.direction is not None:
            try:
                z = along(z, self.directions(), todo.direction, todo.strength or 0.0)
                if end is not None:
                    end = along(end[None], self.directions(), todo.direction, todo.strength or 0.0)[0]
            except IndexError as exc:
                raise RequestError(str(exc)) from None
        if end is None:
            return self._render(z, [target] * len(z))
        frames = int(frames or self.params.steps)
        if not 2 <= frames <= self.params.max_n:
            raise RequestError(f"an interpolation needs 2..{self.params.max_n} frames (n), got {frames}")
        ts = [i / (frames - 1) for i in range(frames)]
        path = torch.stack([slerp(z[0], end, t) for t in ts])
        if target == idx or not _mixes_classes(self.generator):
            return self._render(path, [target] * frames)
        return self._render(path, [idx] * frames, mix_to=[target] * frames, t=ts)

    def project(
        self, photo: Any, category: str | int, params: ProjectParams | None = None, data_dir: str | None = None,
        features: Any = None, encoder: Any = None,
    ) -> Projection:
        """The latent whose product is closest to ``photo`` (a PIL image, a file path, or uint8 C×H×W at the
        generator's size), drawn as ``category`` (productgan.serve.project). The perceptual distance uses the evaluate
        step's domain classifier of ``data_dir`` (default: params project.data); ``features=False``: pixels only."""
        from productgan.serve.project import ProjectParams, domain_feature_fn, project, train_encoder

        params = params or ProjectParams()
        idx = self.category_index(category)
        target = self.photo_array(photo)
        if features is None:
            features, _ = domain_feature_fn(data_dir or params.data)
        if encoder is None and params.encoder:
            encoder = train_encoder(self.generator, self.config.latent_dim, len(self.categories), params,
                                    cache_dir=_cache_dir())
        features = None if features is False else features
        encoder = None if encoder is False else encoder
        return project(self.generator, target, idx, self.config.latent_dim, params, features, encoder)

    def photo_array(self, photo: Any) -> np.ndarray:
        """A photo as the generator's images are: uint8 C×H×W in its frame and channels, fitted and padded
        like preprocess does (aspect kept, padded with the photo's border colour)."""
        from productgan.data.decode import Refusal, decode_image
        from productgan.data.resize import fit_and_pad, to_channels

        cfg = self.config
        if isinstance(photo, np.ndarray):
            if photo.shape != (cfg.channels, *cfg.frame) or photo.dtype != np.uint8:
                raise RequestError(f"a photo array must be uint8 {(cfg.channels, *cfg.frame)}, "
                                   f"got {photo.dtype} {photo.shape}")
            return photo
        if isinstance(photo, str | os.PathLike):
            with open(photo, "rb") as fh:
                decoded = decode_image(fh.read(), keep_alpha=cfg.channels == 4)
            if isinstance(decoded, Refusal):
                raise RequestError(f"{photo}: {decoded.reason}")
            photo = decoded
        if not isinstance(photo, Image.Image):
            raise RequestError(f"a photo must be a PIL image, a file path or a uint8 array, got {type(photo).__name__}")
        image = photo if photo.mode in ("L", "RGB", "RGBA") else photo.convert("RGBA")
        return fit_and_pad(to_channels(image, cfg.channels), cfg.resolution, "auto", cfg.aspect)

    # --- generation ----------------------------------------------------------------------------------

    @torch.no_grad()
    def _render(
        self, z: torch.Tensor, labels: Sequence[int], mix_to: Sequence[int] | None = None, t: Sequence[float] = ()
    ) -> np.ndarray:
        """uint8 (N, C, H, W) for latents ``z`` and ``labels``; with ``mix_to`` the class embedding of each
        row is (1 - t) * embed(label) + t * embed(mix_to), passed to the generator as an argument (no state is
        changed on the shared generator: concurrent requests stay independent)."""
        device = next(self.generator.parameters()).device
        labels_t = torch.as_tensor(list(labels), dtype=torch.long, device=device)
        if mix_to is None:
            return to_uint8(self.generator(z.to(device), labels_t))
        if not _mixes_classes(self.generator):
            raise RequestError("this generator has no class embedding to interpolate")
        other = torch.as_tensor(list(mix_to), dtype=torch.long, device=device)
        weights = torch.as_tensor(list(t), dtype=torch.float32, device=device)[:, None]
        embedding = self.generator.mixed_embedding(labels_t, other, weights)
        return to_uint8(self.generator(z.to(device), labels_t, embedding=embedding))

    def generate_arrays(
        self, category: str | int, n: int = 1, seed: int = 0, truncation: float | None = None,
        latent_edits: LatentEdits | dict[str, Any] | None = None, latent: Any = None,
    ) -> np.ndarray:
        """The raw generator output for one category: uint8 (n, C, H, W), seeded; with ``latent`` (a projected
        photo's) instead of the seed's latents, and with ``latent_edits`` (then n frames when interpolating)."""
        idx = self.category_index(category)
        n, seed, truncation = self.check_request(n, seed, truncation)
        todo = self.parse_latent_edits(latent_edits)
        if latent is None and todo.is_empty():
            return generate_uint8(self.generator, [idx] * n, seed, self.config.latent_dim, truncation)
        interpolating = todo.interpolate_to is not None
        if latent is not None:
            if n != 1 and not interpolating:
                raise RequestError(f"n={n} with a latent: a latent makes one image (or n frames to interpolate_to)")
            z = self.check_latent(latent)
        else:
            z = latents(seed, 1 if interpolating else n, self.config.latent_dim, truncation)
        return self.render_latents(z, idx, todo, frames=n if interpolating else None, truncation=truncation)

    def generate(
        self,
        category: str | int,
        n: int = 1,
        seed: int = 0,
        truncation: float | None = None,
        edits: Edits | dict[str, Any] | None = None,
        latent_edits: LatentEdits | dict[str, Any] | None = None,
        latent: Any = None,
        **edit_kwargs: Any,
    ) -> list[Image.Image]:
        """``n`` images of ``category`` from ``seed``, with edits: image edits (``color='#aa3355'``,
        ``rotate=15`` ...) after latent edits (``to_category=``, ``direction=``/``strength=``, ``interpolate_to=``
        a seed: then n frames), from ``latent=`` (a projected photo's) instead of the seed when given.

        The same (category, n, seed, truncation, edits) gives the same images.
        """
        return list(self.generate_iter(category, n, seed, truncation, edits, latent_edits, latent, **edit_kwargs))

    def generate_iter(
        self,
        category: str | int,
        n: int = 1,
        seed: int = 0,
        truncation: float | None = None,
        edits: Edits | dict[str, Any] | None = None,
        latent_edits: LatentEdits | dict[str, Any] | None = None,
        latent: Any = None,
        **edit_kwargs: Any,
    ) -> Iterator[Image.Image]:
        """``generate``, one image at a time: the request is checked and the generator run now, and each image
        is edited (resized ...) only when it is asked for, so a caller that encodes and drops each image holds
        one full-size image at a time."""
        image_kw, latent_kw = self.split_edits(edit_kwargs)
        todo = self.parse_edits({**(_as_dict(edits)), **image_kw})
        moves = self.parse_latent_edits({**_as_dict(latent_edits), **latent_kw})
        self.check_pixels(self.output_pixels(self.check_request(n, seed, truncation)[0], todo))
        arrays = self.generate_arrays(category, n, seed, truncation, moves, latent)
        return (apply_edits(to_pil(a), todo) for a in arrays)

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
        return list(self.interpolate_iter(category, seeds, categories, seed, steps, truncation, edits, **edit_kwargs))

    def interpolate_iter(
        self,
        category: str | int | None = None,
        seeds: tuple[int, int] | None = None,
        categories: tuple[str | int, str | int] | None = None,
        seed: int = 0,
        steps: int | None = None,
        truncation: float | None = None,
        edits: Edits | dict[str, Any] | None = None,
        **edit_kwargs: Any,
    ) -> Iterator[Image.Image]:
        """``interpolate``, one frame at a time (as ``generate_iter``)."""
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
        self.check_pixels(self.output_pixels(steps, todo))

        ts = [i / (steps - 1) for i in range(steps)]
        dim = self.config.latent_dim
        za, zb = latents(seed_a, 1, dim, truncation)[0], latents(seed_b, 1, dim, truncation)[0]
        z = torch.stack([slerp(za, zb, t) for t in ts])
        if cat_a == cat_b:
            arrays = self._render(z, [cat_a] * steps)
        elif _mixes_classes(self.generator):
            arrays = self._render(z, [cat_a] * steps, mix_to=[cat_b] * steps, t=ts)
        else:
            log.warning("generator %s has no class embedding `embed`: cross-fading pixels", type(self.generator))
            a = self._render(z, [cat_a] * steps).astype(np.float32)
            b = self._render(z, [cat_b] * steps).astype(np.float32)
            w = np.asarray(ts, np.float32)[:, None, None, None]
            arrays = ((1 - w) * a + w * b).round().astype(np.uint8)
        return (apply_edits(to_pil(a), todo) for a in arrays)


def _cache_dir() -> Any:
    """Where evaluate caches its domain classifier (params evaluate.cache_dir, $PRODUCTGAN_CACHE, .cache/...)."""
    from productgan.metrics.cache import cache_root
    from productgan.metrics.evaluate import evaluation_params

    return cache_root(evaluation_params().cache_dir)


def _as_dict(edits: Edits | LatentEdits | dict[str, Any] | None) -> dict[str, Any]:
    if edits is None:
        return {}
    if isinstance(edits, Edits | LatentEdits):
        return {k: v for k, v in vars(edits).items() if v is not None and v is not False}
    return dict(edits)


def _mixes_classes(generator: torch.nn.Module) -> bool:
    """Whether ``generator`` takes a mixed class embedding (every ConditionalGenerator does)."""
    return callable(getattr(generator, "mixed_embedding", None))


def load(
    model_uri_or_dir: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    params: GenerateParams | None = None,
    dst: str | None = None,
) -> ProductGenerator:
    """A ProductGenerator from a generator folder, a folder holding one, or an MLflow model/run URI.

    URIs are downloaded into ``dst``, else into a temporary folder removed once the weights are loaded.
    """
    if dst is not None:
        generator, config = load_generator(resolve_generator_dir(model_uri_or_dir, dst), device)
    else:
        with local_generator_dir(model_uri_or_dir) as folder:
            generator, config = load_generator(folder, device)
    return ProductGenerator(generator, config, source=str(model_uri_or_dir), params=params)
