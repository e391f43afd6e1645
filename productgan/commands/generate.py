"""`productgan generate`, `productgan interpolate`, `productgan edit`: make products and adjust them.

Only click is imported here; torch, mlflow and Pillow load inside the commands (fast `--help`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

EDIT_KEYS = ("color", "hue_shift", "saturation", "brightness", "scale", "rotate", "flip", "size", "background")


def edit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The edit options shared by generate, interpolate and edit (collected into ``edits``)."""
    options = [
        click.option("--color", help="Recolour the product, keeping its shading: '#aa3355', '#a35' or a CSS name."),
        click.option("--hue-shift", type=float, help="Degrees added to the product's hue."),
        click.option("--saturation", type=float, help="Saturation factor for the product (1 = unchanged, 0 = grey)."),
        click.option("--brightness", type=float, help="Brightness factor for the product (1 = unchanged)."),
        click.option("--scale", type=float, help="Product size within the same canvas, e.g. 0.8."),
        click.option("--rotate", type=float, help="Degrees counter-clockwise about the product's centre."),
        click.option("--flip", is_flag=True, default=False, help="Mirror left-right."),
        click.option("--size", type=int, help="Output resolution: the longer side in pixels (Lanczos)."),
        click.option("--background", type=click.Choice(["white", "transparent"]), help="Replace the background."),
    ]
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["edits"] = {k: kwargs.pop(k) for k in EDIT_KEYS}
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
    from productgan.api import load

    if bool(model_uri) == bool(checkpoint):
        raise click.UsageError(
            "give exactly one of --model URI (e.g. models:/product-gan@champion) or --checkpoint DIR"
        )
    try:
        return load(model_uri or checkpoint, params=params)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None


def _params(**overrides: Any) -> Any:
    from productgan.api import GenerateParams
    from productgan.params import ParamsError, load_section

    try:
        return load_section("generate", GenerateParams, overrides=overrides)
    except ParamsError as exc:
        raise click.ClickException(f"generate: {exc}") from None


def _friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Bad requests (unknown category, malformed colour ...) end as one clear line, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from productgan.api import RequestError
        from productgan.edit import EditError

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
    edits: dict[str, Any],
) -> None:
    """Generate products: <out>/<category>_<seed>_<i>.png, a labelled grid.png and generate.json."""
    from productgan.edit import Edits
    from productgan.io import atomic_write_bytes, atomic_write_json
    from productgan.redact import redact
    from productgan.render import labelled_grid, png_bytes, safe_name

    params = _params(n=n, seed=seed, truncation=truncation)
    todo = Edits.from_mapping(edits)  # validate before loading the model
    product = _load(model_uri, checkpoint, params)
    names = [product.categories[product.category_index(c)] for c in categories] or product.categories
    out = Path(out_dir)
    images, labels, files = [], [], []
    for name in names:
        for i, image in enumerate(product.generate(name, params.n, params.seed, params.truncation, todo)):
            path = out / f"{safe_name(name)}_{params.seed}_{i}.png"
            atomic_write_bytes(path, png_bytes(image))
            images.append(image)
            labels.append(f"{name} #{i}")
            files.append(path.name)
    atomic_write_bytes(out / "grid.png", png_bytes(labelled_grid(images, labels, cols=params.n, cell=params.cell)))
    atomic_write_json(
        out / "generate.json",
        {
            "model": redact(model_uri) if model_uri else str(Path(checkpoint).resolve()),
            "generator": product.meta,
            "categories": names,
            "n": params.n,
            "seed": params.seed,
            "truncation": params.truncation,
            "edits": {k: v for k, v in vars(todo).items() if v not in (None, False)},
            "files": files,
        },
    )
    click.echo(f"wrote {len(files)} images and grid.png to {out}")


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
    from productgan.edit import Edits
    from productgan.io import atomic_write_bytes
    from productgan.render import png_bytes, strip

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

    from productgan.edit import Edits, apply_edits
    from productgan.io import atomic_open

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
