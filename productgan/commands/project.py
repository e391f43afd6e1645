"""`productgan project` (a photo into the generator's latent space, then edited through it) and
`productgan directions` (the generator's principal latent directions (SeFa) as one grid each, to name them).

Only click and the edit fields are imported here; torch and the rest load inside the commands (fast `--help`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from productgan.commands.generate import _friendly, _load, _params, edit_options, latent_edit_options, model_options


def _project_params(**overrides: Any) -> Any:
    from productgan.params import ParamsError, load_section
    from productgan.serve.project import ProjectParams

    try:
        params = load_section("project", ProjectParams, overrides=overrides)
    except ParamsError as exc:
        raise click.ClickException(f"project: {exc}") from None
    return params


@click.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False))
@model_options
@click.option("--category", required=True, help="The photo's category (name or index).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="The generator's prepared dataset: its domain classifier is the perceptual distance "
                   "(default: params project.data).")
@click.option("--steps", type=int, default=None, help="Optimisation steps (default: params project.steps).")
@click.option("--encoder/--no-encoder", default=None,
              help="Warm start from an encoder trained on generator samples (default: params project.encoder).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for reconstruction.png, latent.npy, project.json and the edited image(s).")
@latent_edit_options
@edit_options
@_friendly
def project(photo: str, model_uri: str | None, checkpoint: str | None, category: str, data_dir: str | None,
            steps: int | None, encoder: bool | None, out_dir: str, latent_edits: dict[str, Any],
            edits: dict[str, Any]) -> None:
    """Find the generator's closest product to PHOTO; write its reconstruction, its latent (.npy) and the
    distance; then edit it through the generator (--to-category, --direction/--strength, --interpolate-to
    PHOTO2|SEED) and with the image edits (colour, size, angle ...), in that order."""
    import numpy as np

    from productgan.io import atomic_open, atomic_write_bytes, atomic_write_json
    from productgan.render import png_bytes, strip, to_pil
    from productgan.serve.edit import Edits, apply_edits
    from productgan.serve.edit_request import is_digits

    params = _project_params(steps=steps, encoder=encoder, data=data_dir)
    gen_params = _params()
    todo = Edits.from_mapping(edits)
    second_photo = latent_edits.get("interpolate_to")
    second_photo = second_photo if second_photo is not None and not is_digits(str(second_photo)) else None
    if second_photo is not None and not Path(second_photo).is_file():
        raise click.UsageError(f"--interpolate-to {second_photo}: neither a seed nor a photo file")
    product = _load(model_uri, checkpoint, gen_params)
    moves = product.parse_latent_edits({**latent_edits, "interpolate_to": None})
    if not Path(params.data, "manifest.json").is_file():
        raise click.ClickException(f"{params.data}: not a prepared dataset (no manifest.json); give --data, the "
                                   "folder the generator was trained on (its domain classifier measures distance)")
    result = product.project(photo, category, params)
    out = Path(out_dir)
    atomic_write_bytes(out / "reconstruction.png", png_bytes(to_pil(result.reconstruction)))
    with atomic_open(out / "latent.npy") as fh:
        np.save(fh, result.latent)
    report = {"photo": photo, "category": product.categories[result.label], **result.summary()}
    z = product.check_latent(result.latent)
    name = product.categories[result.label]
    if latent_edits.get("interpolate_to") is not None:
        end = None
        if second_photo is not None:
            other = product.project(second_photo, category, params)
            report["interpolate_to"] = {"photo": second_photo, **other.summary()}
            end = product.check_latent(other.latent)
        else:
            moves = product.parse_latent_edits(latent_edits)
        frames = product.render_latents(z, name, moves, frames=gen_params.steps, end=end)
        images = [apply_edits(to_pil(a), todo) for a in frames]
        labels = [f"{i / (len(images) - 1):.2f}" for i in range(len(images))]
        atomic_write_bytes(out / "strip.png", png_bytes(strip(images, labels, cell=gen_params.cell)))
        report["wrote"] = "strip.png"
    elif not moves.is_empty() or not todo.is_empty():
        edited = apply_edits(to_pil(product.render_latents(z, name, moves)[0]), todo)
        atomic_write_bytes(out / "edited.png", png_bytes(edited))
        report["wrote"] = "edited.png"
    report["latent_edits"] = {k: v for k, v in latent_edits.items() if v is not None}
    report["edits"] = {k: v for k, v in vars(todo).items() if v not in (None, False)}
    atomic_write_json(out / "project.json", report)
    distance = f"feature distance {result.feature_distance:.4f}, " if result.feature_distance is not None else ""
    click.echo(f"project: {distance}pixel MSE {result.pixel_mse:.4f} in {result.seconds:.1f} s; wrote "
               f"reconstruction.png, latent.npy, project.json{', ' + report['wrote'] if 'wrote' in report else ''} "
               f"in {out}")


@click.command()
@model_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for direction_<k>.png (one grid per direction) and directions.json.")
@click.option("--count", type=int, default=None, help="Directions to show (default: params generate.directions).")
@click.option("--seed", type=int, default=None, help="Seed of the latent each grid starts from.")
@click.option("--strength", type=float, default=4.0, show_default=True,
              help="The grid's columns go from -strength to +strength.")
@click.option("--columns", type=int, default=7, show_default=True, help="Strengths per row.")
@_friendly
def directions(model_uri: str | None, checkpoint: str | None, out_dir: str, count: int | None, seed: int | None,
               strength: float, columns: int) -> None:
    """The generator's principal latent directions (SeFa: the eigenvectors of its first layer's weight), one grid
    each: a row per category, columns from -strength to +strength, so a person can name them. Use one
    with `generate|project --direction K --strength S`."""
    from productgan.gan.sample import latents
    from productgan.io import atomic_write_bytes, atomic_write_json
    from productgan.render import labelled_grid, png_bytes, to_pil
    from productgan.serve.edit_request import MAX_STRENGTH
    from productgan.serve.latent import strengths

    if not 0 < strength <= MAX_STRENGTH or not 2 <= columns <= 15:
        raise click.UsageError(f"--strength must be in (0, {MAX_STRENGTH:g}] and --columns in 2..15")
    params = _params(seed=seed, **({"directions": count} if count else {}))
    product = _load(model_uri, checkpoint, params)
    found = product.directions()
    values = strengths(strength, columns)
    out = Path(out_dir)
    index = {"method": "sefa", "count": len(found), "explained_variance": found.explained, "seed": params.seed,
             "strengths": values, "files": []}
    z0 = latents(params.seed, 1, product.config.latent_dim, params.truncation)
    for k in range(len(found)):
        images, labels = [], []
        for name in product.categories:
            for s in values:
                array = product.render_latents(z0, name, {"direction": k, "strength": s})[0]
                images.append(to_pil(array))
                labels.append(f"{name[:10]} {s:+.1f}")
        picture = labelled_grid(images, labels, cols=columns, cell=min(params.cell, 84))
        atomic_write_bytes(out / f"direction_{k}.png", png_bytes(picture))
        index["files"].append(f"direction_{k}.png")
    atomic_write_json(out / "directions.json", index)
    click.echo(f"directions: wrote {len(found)} grids (direction_0.png ...) and directions.json to {out}")
