"""`productgan preprocess`: an ingested data/ folder -> train/val/test arrays and a manifest."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--input", "input_dir", default=None, type=click.Path(file_okay=False, exists=True),
    help="Folder written by `productgan ingest` (holds manifest.json); not with --merge.",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False),
    help="Output folder; replaced as a whole when the step succeeds.",
)
@click.option(
    "--resolution", type=click.Choice(["28", "32", "64", "128", "256"]), default=None,
    help="The longer side of the images (default: params.yaml preprocess.resolution).",
)
@click.option(
    "--aspect", default=None, metavar="W:H",
    help="Frame of the images, e.g. 3:4 for portrait catalogue photos (default: params.yaml preprocess.aspect, 1:1).",
)
@click.option(
    "--channels", type=click.Choice(["1", "3", "4"]), default=None,
    help="1 = grey, 3 = RGB, 4 = RGBA cut-outs (default: params.yaml preprocess.channels).",
)
@click.option(
    "--shard", default=None, metavar="I/N",
    help="Decode only shard I of N (every N-th photo) into the part folder OUT; merge the parts with --merge.",
)
@click.option(
    "--merge", "parts", multiple=True, type=click.Path(file_okay=False, exists=True), metavar="PART",
    help="Merge the part folders of every shard (repeat for each) into OUT: the same output as one preprocess.",
)
def preprocess(
    input_dir: str | None, out_dir: str, resolution: str | None, aspect: str | None, channels: str | None,
    shard: str | None, parts: tuple[str, ...],
) -> None:
    """Decode, validate, dedupe, resize and split images into memory-mappable arrays.

    Writes OUT/{train,val,test}_images.npy (uint8 N×C×H×W), OUT/{split}_labels.npy (int64) and
    OUT/manifest.json (counts, categories, refused files with reasons, duplicates, dataset hash, params).
    Photos are decoded by preprocess.workers processes (0 = every core). A catalogue too big for one machine:
    `--shard I/N` on N machines, then `--merge PART ...` (byte-identical to one run).
    """
    from productgan.data.preprocess import PreprocessError, PreprocessParams, run_preprocess
    from productgan.data.shards import decode_shard, merge_parts, parse_shard
    from productgan.frame import frame_size
    from productgan.params import ParamsError, load_section

    overrides = {
        "resolution": int(resolution) if resolution else None,
        "channels": int(channels) if channels else None,
        "aspect": aspect,
    }
    if bool(parts) == bool(input_dir) or (shard and parts):
        raise click.UsageError("give --input (with or without --shard), or --merge PART ... (without --input)")
    try:
        params = load_section("preprocess", PreprocessParams, overrides=overrides)
        if shard:
            index, count = parse_shard(shard)
            part = decode_shard(input_dir, out_dir, index, count, params)
            used = sum(r["batch"]["count"] for r in part["records"] if r["batch"])
            click.echo(f"preprocess: shard {index}/{count}: {len(part['records'])} of {part['items']} files, "
                       f"{used} images -> {out_dir}")
            return
        manifest = merge_parts(list(parts), out_dir, params) if parts else run_preprocess(input_dir, out_dir, params)
    except (PreprocessError, ParamsError) as exc:
        raise click.ClickException(str(exc)) from exc
    counts = manifest["counts"]
    inputs = manifest["inputs"]
    click.echo(
        f"preprocess: {inputs['images']} images -> {out_dir} at "
        f"{'x'.join(str(v) for v in frame_size(params.resolution, params.aspect)[::-1])}x"
        f"{params.channels}: train {counts['train']['total']}, val {counts['val']['total']}, "
        f"test {counts['test']['total']}; refused {inputs['refused']}, duplicates dropped {inputs['duplicates']}"
    )
    for r in manifest["refused"][:5]:
        click.echo(f"  refused {r['path']}: {r['reason']}", err=True)
    if len(manifest["refused"]) > 5:
        click.echo(f"  ... {len(manifest['refused']) - 5} more refused: see {out_dir}/manifest.json", err=True)
