"""Preprocess a catalogue in parallel pods: each shard decodes every n-th item of the photo list into a part
folder, and one merge reads the parts back in the one-process order, then drops duplicates, splits and writes as
``run_preprocess`` does. The result is byte-identical to one ``run_preprocess`` of the same input and settings.

A part folder holds ``part.json`` (the shard, the input it came from, the settings, and per item its batch or
refusals), ``images.npy`` (uint8 N×C×R×R, every batch of the shard in order), ``labels.npy`` (int64 N) and
``digests.npy`` (uint8 N×32: the sha256 pixel digests that dedup and the split use).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from productgan.data.preprocess import (
    PreprocessError,
    PreprocessParams,
    _Batch,
    _check_out_dir,
    _Input,
    _Run,
    decode_items,
    open_input,
    output_params,
    plan_items,
    write_prepared,
)
from productgan.frame import frame_size
from productgan.io import atomic_write_json, read_json, save_npy_atomic

PART_FORMAT = "productgan-preprocess-part/1"
PART_FILE = "part.json"
PART_ARRAYS = ("images.npy", "labels.npy", "digests.npy")
DIGEST_BYTES = 32


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: shard 2 of 8 (counted from 0)."""
    index, sep, count = text.partition("/")
    try:
        shard, shards = int(index), int(count)
    except ValueError:
        shard, shards = -1, 0
    if not sep or shards < 1 or not 0 <= shard < shards:
        raise PreprocessError(f"preprocess --shard {text!r}: use I/N with 0 <= I < N, e.g. 0/4")
    return shard, shards


def decode_shard(
    input_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    shard: int,
    shards: int,
    params: PreprocessParams | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Decode items ``shard``, ``shard + shards``, ... of ``input_dir`` into the part folder ``out_dir``."""
    params = params or PreprocessParams()
    inp = open_input(input_dir)
    out = Path(out_dir).resolve()
    _check_part_out(out, inp.dir)
    plan = _Run()
    items = plan_items(inp, plan)
    mine = list(range(shard, len(items), shards))
    records, batches = [], []
    for index, result in zip(mine, decode_items(inp, [items[i] for i in mine], params, progress), strict=True):
        batch = result.batches[0] if result.batches else None
        records.append({
            "index": index,
            "batch": None if batch is None else {"path": batch.path, "official_split": batch.official_split,
                                                 "is_idx": batch.is_idx, "count": int(len(batch.labels))},
            "refused": result.refused,
            "refused_images": result.refused_images,
        })
        if batch is not None:
            batches.append(batch)
    part = {
        "format": PART_FORMAT,
        "shard": shard,
        "shards": shards,
        "items": len(items),
        "input": {"manifest": str(inp.manifest_path), "manifest_sha256": inp.manifest_sha256,
                  "dataset_hash": inp.dataset_hash, "categories": inp.categories, "files": inp.file_count},
        "params": output_params(params),
        # the plan's own refusals are the same in every shard; the merge takes shard 0's
        "plan_refused": plan.refused,
        "plan_refused_images": plan.refused_images,
        "records": records,
    }
    _write_part(out, part, batches, params)
    return part


def _check_part_out(out: Path, input_dir: Path) -> None:
    if out == input_dir or input_dir.is_relative_to(out) or out.is_relative_to(input_dir):
        raise PreprocessError(f"preprocess: --out {out} overlaps --input {input_dir}; use a separate folder")
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in {PART_FILE, *PART_ARRAYS})
        if not out.is_dir() or foreign:
            raise PreprocessError(f"preprocess --shard: --out {out} holds other files; choose a new or empty folder")


def _write_part(out: Path, part: dict[str, Any], batches: list[_Batch], params: PreprocessParams) -> None:
    shape = (0, params.channels, *frame_size(params.resolution, params.aspect))
    images = np.concatenate([b.images for b in batches]) if batches else np.zeros(shape, np.uint8)
    labels = np.concatenate([b.labels for b in batches]) if batches else np.zeros(0, np.int64)
    digests = np.frombuffer(b"".join(d for b in batches for d in b.digests), np.uint8).reshape(-1, DIGEST_BYTES)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, array in zip(PART_ARRAYS, (images, labels.astype(np.int64), digests), strict=True):
            save_npy_atomic(tmp / name, array)
        atomic_write_json(tmp / PART_FILE, part)  # last: a part with part.json is whole
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def merge_parts(
    part_dirs: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    params: PreprocessParams | None = None,
) -> dict[str, Any]:
    """Merge the parts of every shard into ``out_dir`` (dedup, split, write); returns the written manifest."""
    params = params or PreprocessParams()
    out = Path(out_dir).resolve()
    parts = [_read_part(Path(d).resolve()) for d in part_dirs]
    if not parts:
        raise PreprocessError("preprocess --merge: no parts given")
    first = parts[0][1]
    shards = first["shards"]
    got = sorted(p["shard"] for _, p in parts)
    if got != list(range(shards)):
        raise PreprocessError(f"preprocess --merge: expected shards 0..{shards - 1} once each, got {got}; "
                              "pass the part folder of every shard")
    for folder, part in parts:
        _check_out_dir(out, folder)
        for key in ("shards", "items", "input"):
            if part[key] != first[key]:
                raise PreprocessError(f"preprocess --merge: {folder} was made from another input ({key} differs); "
                                      "every part must come from the same data/ and shard count")
        if part["params"] != output_params(params):
            raise PreprocessError(f"preprocess --merge: {folder} was decoded with other preprocess settings "
                                  f"({part['params']}) than this merge ({output_params(params)})")

    zero = next(p for _, p in parts if p["shard"] == 0)
    run = _Run(refused=list(zero["plan_refused"]), refused_images=int(zero["plan_refused_images"]))
    items: list[tuple[int, _Run]] = []
    for folder, part in parts:
        images = np.load(folder / "images.npy", mmap_mode="r")
        labels = np.load(folder / "labels.npy")
        digests = np.load(folder / "digests.npy")
        at = 0
        for record in part["records"]:
            one = _Run(refused=list(record["refused"]), refused_images=int(record["refused_images"]))
            meta = record["batch"]
            if meta is not None:
                n = int(meta["count"])
                one.batches.append(_Batch(meta["path"], meta["official_split"], bool(meta["is_idx"]),
                                          images[at : at + n], labels[at : at + n],
                                          [bytes(d) for d in digests[at : at + n]]))
                at += n
            items.append((int(record["index"]), one))
    items.sort(key=lambda pair: pair[0])
    if [i for i, _ in items] != list(range(first["items"])):
        raise PreprocessError("preprocess --merge: the parts do not cover every item exactly once; re-run the shards")
    for _, one in items:
        run.absorb(one)
    source = first["input"]
    inp = _Input(dir=Path(source["manifest"]).parent, manifest_path=Path(source["manifest"]),
                 manifest_sha256=source["manifest_sha256"], dataset_hash=source["dataset_hash"],
                 categories=list(source["categories"]), sources={}, files=[], file_count=int(source["files"]))
    return write_prepared(run, inp, out, params)


def _read_part(folder: Path) -> tuple[Path, dict[str, Any]]:
    path = folder / PART_FILE
    if not path.is_file():
        raise PreprocessError(f"preprocess --merge: {path} not found; pass folders written by "
                              "`productgan preprocess --shard I/N`")
    part = read_json(path)
    if not isinstance(part, dict) or part.get("format") != PART_FORMAT:
        raise PreprocessError(f"preprocess --merge: {path}: expected format {PART_FORMAT!r}")
    return folder, part
