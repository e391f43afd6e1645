"""`productgan generate`, `productgan interpolate`, `productgan edit`: make products and adjust them (image
edits, and latent edits through the generator: `generate --to-category/--direction/--interpolate-to`).

Only click and the edit fields (productgan.serve.edit_request) are imported here; torch, mlflow and numpy load
inside the commands (fast `--help`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def edit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The edit options shared by generate, interpolate and edit, one per field of productgan.serve.edit_request.Edits
    (collected into ``edits``)."""
    from productgan.serve.edit_request import Edits

    fields = Edits.fields()
    for name, kind, meta in reversed(fields):
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            func = click.option(flag, is_flag=True, default=False, help=meta["help"])(func)
        else:
            choice = click.Choice(list(meta["choices"])) if "choices" in meta else kind
            func = click.option(flag, type=choice, help=meta["help"])(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["edits"] = {name: kwargs.pop(name) for name, _, _ in fields}
        return func(*args, **kwargs)

    return wrapper


def latent_edit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One option per field of productgan.serve.edit_request.LatentEdits (collected into ``latent_edits``)."""
    from productgan.serve.edit_request import LatentEdits

    fields = LatentEdits.fields()
    for name, kind, meta in reversed(fields):
        func = click.option("--" + name.replace("_", "-"), type=kind, help=meta["help"])(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["latent_edits"] = {name: kwargs.pop(name) for name, _, _ in fields}
        return func(*args, **kwargs)

    return wrapper


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--checkpoint",
        type=click.Path(exists=True, file_okay=False),
        help="A generator folder (`productgan train --out`) or any folder holding generator.json.",
    )(func)
    return click.option("--model", "model_uri", help="An MLflow model URI, e.g. models:/product-gan@champion.")(func)


def _load(model_uri: str | None, checkpoint: str | None, params: Any) -> Any:
    from productgan.serve.api import load

    if bool(model_uri) == bool(checkpoint):
        raise click.UsageError(
            "give exactly one of --model URI (e.g. models:/product-gan@champion) or --checkpoint DIR"
        )
    try:
        return load(model_uri or checkpoint, params=params)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None


def _params(**overrides: Any) -> Any:
    from productgan.params import ParamsError, load_section
    from productgan.serve.api import GenerateParams

    try:
        return load_section("generate", GenerateParams, overrides=overrides)
    except ParamsError as exc:
        raise click.ClickException(f"generate: {exc}") from None


def _friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Bad requests (unknown category, malformed colour ...) end as one clear line, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from productgan.serve.api import RequestError
        from productgan.serve.edit import EditError

        try:
            return func(*args, **kwargs)
        except (RequestError, EditError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.command()
@model_options
@click.option(
    "--category", "categories", multiple=True, help="Category name or index; repeat for several (default: all)."
)
@click.option("--n", type=int, default=None, help="Images per category (default: params generate.n).")
@click.option("--seed", type=int, default=None, help="Random seed: the same seed gives the same images.")
@click.option("--truncation", type=float, default=None, help="(0, 1]: less variety, more typical products.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--latent", "latent_file", type=click.Path(exists=True, dir_okay=False),
              help="Start from this latent (latent.npy of `productgan project`) instead of the seed: one image.")
@latent_edit_options
@edit_options
@_friendly
def generate(
    model_uri: str | None,
    checkpoint: str | None,
    categories: tuple[str, ...],
    n: int | None,
    seed: int | None,
    truncation: float | None,
    out_dir: str,
    latent_file: str | None,
    latent_edits: dict[str, Any],
    edits: dict[str, Any],
) -> None:
    """Generate products: <out>/<category>_<seed>_<i>.png, a labelled grid.png and generate.json. Latent edits
    (--to-category, --direction/--strength, --interpolate-to SEED: then n frames) come before image edits."""
    from productgan.io import atomic_write_bytes
    from productgan.serve.edit import Edits
    from productgan.serve.edit_request import LatentEdits
    from productgan.serve.outputs import GRID, SETTINGS, generate_files

    latent = None
    if latent_file is not None:
        import numpy as np

        try:
            latent = np.load(latent_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{latent_file}: not a .npy latent ({exc})") from None
        n = n or 1
    params = _params(n=n, seed=seed, truncation=truncation)
    todo = Edits.from_mapping(edits)  # validate before loading the model
    moves = LatentEdits.from_mapping(latent_edits)
    product = _load(model_uri, checkpoint, params)
    names = [product.categories[product.category_index(c)] for c in categories] or product.categories
    out = Path(out_dir)
    files = generate_files(product, names, params, todo, model=model_uri or str(Path(checkpoint).resolve()),
                           latent_edits=moves, latent=latent)
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    images = [name for name in files if name not in (GRID, SETTINGS)]
    click.echo(f"wrote {len(images)} images and grid.png to {out}")


@click.command()
@model_options
@click.option("--category", help="Category for --seeds (name or index).")
@click.option("--seeds", nargs=2, type=int, default=None, help="Interpolate between two seeds: --seeds 1 2.")
@click.option("--categories", nargs=2, default=None, help="Interpolate between two categories: --categories A B.")
@click.option("--seed", type=int, default=None, help="Seed used with --categories (default: params generate.seed).")
@click.option("--steps", type=int, default=None, help="Frames, ends included (default: params generate.steps).")
@click.option("--truncation", type=float, default=None, help="(0, 1]: less variety, more typical products.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="The strip PNG to write.")
@edit_options
@_friendly
def interpolate(
    model_uri: str | None,
    checkpoint: str | None,
    category: str | None,
    seeds: tuple[int, int] | None,
    categories: tuple[str, str] | None,
    seed: int | None,
    steps: int | None,
    truncation: float | None,
    out_file: str,
    edits: dict[str, Any],
) -> None:
    """A strip of images morphing between two seeds (one category) or two categories (one seed)."""
    from productgan.io import atomic_write_bytes
    from productgan.render import png_bytes, strip
    from productgan.serve.edit import Edits

    seeds = seeds or None  # click gives () when absent
    categories = categories or None
    if not seeds and not categories:
        raise click.UsageError("give --seeds A B (with --category) and/or --categories A B")
    if seeds and not categories and category is None:
        raise click.UsageError("--seeds needs --category")
    params = _params(seed=seed, steps=steps, truncation=truncation)
    todo = Edits.from_mapping(edits)
    product = _load(model_uri, checkpoint, params)
    frames = product.interpolate(
        category=category, seeds=seeds, categories=categories, seed=params.seed, steps=params.steps,
        truncation=params.truncation, edits=todo,
    )
    ends = (
        [product.categories[product.category_index(c)] for c in categories]
        if categories
        else [f"seed {s}" for s in seeds]
    )
    labels = [f"{i / (len(frames) - 1):.2f}" for i in range(len(frames))]
    labels[0], labels[-1] = ends
    atomic_write_bytes(out_file, png_bytes(strip(frames, labels, cell=params.cell)))
    click.echo(f"wrote {len(frames)} frames to {out_file}")


@click.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="Edited image file.")
@edit_options
@_friendly
def edit(photo: str, out_file: str, edits: dict[str, Any]) -> None:
    """Edit any product photo (or a generated image): colour, size, angle, resolution, background."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from productgan.io import atomic_open
    from productgan.serve.edit import Edits, apply_edits

    todo = Edits.from_mapping(edits)
    try:
        with Image.open(photo) as src:
            src.load()
            image = ImageOps.exif_transpose(src)  # phone photos: turn upright as they are shown
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise click.ClickException(f"{photo}: not an image Pillow can read ({exc})") from None
    result = apply_edits(image, todo)
    fmt = Image.registered_extensions().get(Path(out_file).suffix.lower())
    if fmt is None:
        raise click.ClickException(f"{out_file}: unknown image extension; use .png, .jpg, .webp ...")
    if result.mode == "RGBA" and fmt == "JPEG":
        raise click.ClickException(f"{out_file}: JPEG has no transparency; write a .png or use --background white")
    with atomic_open(out_file) as fh:
        result.save(fh, format=fmt)
    click.echo(f"wrote {out_file} ({result.width}x{result.height} {result.mode})")
