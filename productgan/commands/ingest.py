"""`productgan ingest`: product photos from Fashion-MNIST, a folder, an archive or S3 into data/ (+ manifest)."""

from __future__ import annotations

import click

_MAX_SHOWN_SKIPPED = 10


@click.command()
@click.option(
    "--source",
    default=None,
    help="fashion-mnist[:DIR] | /path/to/folder | archive.zip|.tar|.tar.gz|.tgz | s3://bucket/prefix "
    "(default: params ingest.source).",
)
@click.option(
    "--out", default=None, type=click.Path(file_okay=False), help="Dataset folder (default: params ingest.out)."
)
@click.option("--append", is_flag=True, help="Add this source to the dataset in --out as data/<name>/.")
@click.option("--name", default=None, help="Source name, the folder data/<name>/ (default: from the source).")
def ingest(source: str | None, out: str | None, append: bool, name: str | None) -> None:
    """Copy product photos (original bytes) into DIR/<name>/ and write DIR/manifest.json.

    Re-ingesting the same source gives byte-identical output. Links, devices, FIFOs and unsafe archive
    paths are refused; OS junk (.DS_Store, __MACOSX/, ._*, hidden files) is skipped; both are listed in
    the manifest.
    """
    from productgan.data.ingest import IngestError, IngestParams, run_ingest, summary
    from productgan.params import load_section

    params = load_section("ingest", IngestParams, overrides={"source": source, "out": out})
    try:
        result = run_ingest(params, append=append, name=name)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    for r in result.refused:
        click.echo(f"ingest: refused {r['path']}: {r['reason']}", err=True)
    for r in result.skipped[:_MAX_SHOWN_SKIPPED]:
        click.echo(f"ingest: skipped {r['path']}: {r['reason']}", err=True)
    if len(result.skipped) > _MAX_SHOWN_SKIPPED:
        more = len(result.skipped) - _MAX_SHOWN_SKIPPED
        click.echo(f"ingest: ... and {more} more skipped (see manifest.json)", err=True)
    click.echo(summary(result))
    click.echo(f"ingest: categories: {', '.join(result.categories)}")
