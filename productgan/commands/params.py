"""`productgan params show|write`: the effective settings (each step's defaults, the chosen recipe, params.yaml,
options) and where each value came from; `write` puts them in the file DVC's stages track."""

from __future__ import annotations

from typing import Any

import click

EFFECTIVE_FILE = "params.effective.yaml"
HEADER = ("# The effective settings of every step: its defaults (productgan's dataclasses), the chosen recipe and\n"
          "# params.yaml. Written by `productgan params write` (dvc.yaml's stage `settings`); DVC's stages track\n"
          "# their sections here, so a changed default is a changed param. Do not edit: set values in params.yaml.\n")


def _yaml_scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _effective(recipe: str | None, sections: tuple[str, ...]) -> dict[str, Any]:
    from productgan.params import effective, load_params, params_path

    return effective(load_params(), str(params_path()), {"train": {"recipe": recipe}}, sections or None)


@click.group()
def params() -> None:
    """The effective settings: defaults, recipe, params.yaml and options, and where each value came from."""


@params.command()
@click.option("--recipe", default=None, help="Show the train settings of this recipe (as `train --recipe`).")
@click.option("--section", "sections", multiple=True, help="Only this section (repeatable; default: all).")
def show(recipe: str | None, sections: tuple[str, ...]) -> None:
    """Print every setting with its source: default, recipe NAME, the params file, or override."""
    for name, resolved in _effective(recipe, sections).items():
        click.echo(f"{name}:")
        values = resolved.values()
        for key, source in resolved.sources.items():
            node: Any = values
            for part in key.split("."):
                node = node[part]
            line = f"  {key}: {_yaml_scalar(node)}"
            click.echo(f"{line:<46} # {source}")


@params.command()
@click.option("--out", default=EFFECTIVE_FILE, show_default=True, type=click.Path(dir_okay=False),
              help="The file to write.")
def write(out: str) -> None:
    """Write the effective settings of every step (no sources) for DVC's stages to track."""
    import yaml

    from productgan.io import atomic_open

    doc = {name: resolved.values() for name, resolved in _effective(None, ()).items()}
    text = HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)
    with atomic_open(out, "wb") as fh:
        fh.write(text.encode("utf-8"))
    click.echo(f"params: wrote {out}")
