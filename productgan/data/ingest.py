"""Ingest: copy a source's product photos (original bytes) into ``data/<source>/`` and write ``data/manifest.json``.

Output is a pure function of the source: sorted, stable JSON, no timestamps, so re-ingesting the same source
gives byte-identical files and the same DVC hash. Safety rules:
- --out is only ever replaced when it holds exactly a previous ingest of the same source (manifest.json and
  the files it lists, nothing else); anything else is refused, so user data is never deleted.
- everything is written into a temp folder beside --out and renamed into place at the end; a failure leaves
  --out as it was and removes the temp folder.
- nothing is written outside --out: destination paths are built from checked components (``safety``).
- nothing fills the disk: a file larger than ``max_file_mb`` (an archive member's declared, expanded size) is
  refused, and a source whose accepted files add up to more than ``max_total_mb``, or to more than the free
  space beside --out, is refused before the first byte is written; a file that yields more bytes than its
  listed size (a forged archive header, a file growing while read) stops the copy.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from productgan.data.safety import check_source_name
from productgan.data.sources import open_source
from productgan.data.sources.base import IngestError, Plan, PlannedFile, Source
from productgan.io import atomic_write_json, fsync_path, read_json

FORMAT = "productgan-dataset/1"
MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_WORKERS = 8


@dataclass
class IngestParams:
    """The ``ingest`` section of params.yaml: every default (params.yaml states what differs)."""

    source: str = "fashion-mnist"  # fashion-mnist | /path/to/folder | archive.zip|.tar|.tar.gz | s3://bucket/prefix;
    #                                `make run` ingests it into data/ when the DVC remote lacks the recorded version
    out: str = "data"
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; None = AWS_ENDPOINT_URL / standard AWS config
    s3_max_attempts: int = 8  # retries on throttling and 5xx (botocore "standard" retry mode)
    max_file_mb: float = 256.0  # a larger file (an archive member once extracted) is refused: archive bombs
    max_total_mb: float = 51200.0  # a source larger than this (or than the free disk) is refused before any write


@dataclass
class IngestResult:
    out: Path
    name: str
    action: str  # created | replaced | appended | unchanged
    files: int
    bytes: int
    categories: list[str]
    refused: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


# --- the existing --out ------------------------------------------------------------------------------------


def _unlisted_paths(out: Path, manifest: dict[str, Any]) -> list[str]:
    """Paths under ``out`` that the manifest does not account for (user files ingest must not delete)."""
    listed = {f["path"] for f in manifest.get("files", [])} | {MANIFEST}
    extra = []
    for dirpath, dirnames, filenames in os.walk(out):
        rel_dir = os.path.relpath(dirpath, out)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel not in listed:
                extra.append(rel)
    return sorted(extra)


def read_existing(out: Path) -> dict[str, Any] | None:
    """The manifest of the dataset in ``out``; None when ``out`` is missing or empty. Refuses anything else."""
    if out.is_symlink():
        raise IngestError(f"ingest: --out {out} is a symlink; pass the real folder it points to")
    if not out.exists():
        return None
    if not out.is_dir():
        raise IngestError(f"ingest: --out {out} exists and is not a folder; choose another --out")
    if not any(out.iterdir()):
        return None
    path = out / MANIFEST
    try:
        manifest = read_json(path) if path.is_file() else None
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IngestError(
            f"ingest: --out {out} is not empty and is not a dataset written by `productgan ingest` (no valid "
            f"{MANIFEST}); refusing to replace it. Choose an empty or new --out, or move its contents away."
        )
    extra = _unlisted_paths(out, manifest)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise IngestError(
            f"ingest: --out {out} holds files that ingest did not write ({shown}); refusing to touch it. "
            "Move them away (or choose another --out) and run again."
        )
    return manifest


def _check_no_overlap(source: Source, out: Path) -> None:
    local = source.local_path()
    if local is None:
        return
    src, dst = Path(local).resolve(), out.resolve()
    if src == dst or dst.is_relative_to(src) or src.is_relative_to(dst):
        raise IngestError(
            f"ingest: source {source.uri} and --out {out} overlap; ingest would read its own output. "
            "Put the output folder outside the source (and the source outside the output)."
        )


# --- the manifest ------------------------------------------------------------------------------------------


def _records(name: str, items: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"source": name, "path": p, "reason": r} for p, r in items]


def _contribution(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    """Everything one source adds to a manifest (to compare a re-appended source with the one recorded)."""
    return {
        "source": next((s for s in manifest["sources"] if s["name"] == name), None),
        "files": [f for f in manifest["files"] if f["source"] == name],
        "refused": [r for r in manifest["refused"] if r["source"] == name],
        "skipped": [r for r in manifest["skipped"] if r["source"] == name],
    }


def _sorted_manifest(m: dict[str, Any]) -> dict[str, Any]:
    def by_problem(r: dict[str, str]) -> tuple[str, str, str]:
        return r["source"], r["path"], r["reason"]

    return {
        "format": FORMAT,
        "categories": list(m["categories"]),
        "sources": list(m["sources"]),
        "files": sorted(m["files"], key=lambda f: f["path"]),
        "refused": sorted(m["refused"], key=by_problem),
        "skipped": sorted(m["skipped"], key=by_problem),
    }


def merge_manifests(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``existing`` plus a new source: categories keep their order, new ones are appended sorted."""
    known = set(existing["categories"])
    added = sorted({c for c in new["categories"] if c not in known})
    return _sorted_manifest(
        {
            "categories": list(existing["categories"]) + added,
            "sources": list(existing["sources"]) + list(new["sources"]),
            "files": list(existing["files"]) + list(new["files"]),
            "refused": list(existing["refused"]) + list(new["refused"]),
            "skipped": list(existing["skipped"]) + list(new["skipped"]),
        }
    )


# --- copying -----------------------------------------------------------------------------------------------


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not sys.stderr.isatty())


_MB = 1 << 20
_FREE_SPACE_MARGIN = 256 * _MB  # left free beside --out: the manifest, and whatever else needs the disk


def enforce_size_limits(plan: Plan, params: IngestParams, out: Path) -> Plan:
    """Refuse files over ``max_file_mb``; refuse the whole source (IngestError) when what is left exceeds
    ``max_total_mb`` or the free space beside ``out``. Sizes are the source's listing (archives: the members'
    declared, expanded sizes), so nothing is read or written to find out."""
    limit = params.max_file_mb * _MB
    too_big = [f for f in plan.files if f.size is not None and f.size > limit]
    if too_big:
        files = [f for f in plan.files if f not in too_big]
        refused = [(f.dest, f"{f.size / _MB:.1f} MB once extracted, over ingest.max_file_mb = {params.max_file_mb:g}"
                    " (an archive bomb, or raise the limit in params.yaml)") for f in too_big]
        # photo sources name categories by folder (recomputed: one may now be empty); IDX sources list their own
        by_folder = all(f.category is not None for f in plan.files)
        categories = sorted({str(f.category) for f in files}) if by_folder else plan.categories
        plan = Plan(files=files, categories=categories, refused=sorted(plan.refused + refused), skipped=plan.skipped)
    total = sum(f.size or 0 for f in plan.files)
    if total > params.max_total_mb * _MB:
        raise IngestError(
            f"ingest: the source holds {total / _MB:.1f} MB to copy, over ingest.max_total_mb = "
            f"{params.max_total_mb:g} (params.yaml); nothing was written. Raise the limit if that is expected."
        )
    existing = out.parent if out.parent.exists() else Path(os.path.abspath(os.curdir))
    free = shutil.disk_usage(existing).free
    if total + _FREE_SPACE_MARGIN > free:
        raise IngestError(
            f"ingest: the source holds {total / _MB:.1f} MB to copy, but only {free / _MB:.1f} MB are free beside "
            f"{out}; nothing was written. Free some space or choose another --out."
        )
    return plan


def _copy_file(source: Source, f: PlannedFile, dest_root: Path, bar: Any, max_bytes: float) -> dict[str, Any]:
    dest = dest_root / f.dest
    # Components were checked when planning; this is the last guard before a byte is written.
    if not os.path.normpath(dest).startswith(str(dest_root) + os.sep):
        raise IngestError(f"ingest: internal error: {f.dest!r} would be written outside {dest_root}")
    h = hashlib.sha256()
    size = 0
    with source.open(f) as src, open(dest, "xb") as dst:  # "x": never overwrite what another entry wrote
        while True:
            try:
                chunk = src.read(_CHUNK)
            except IngestError:
                raise
            except Exception as exc:  # bad CRC, truncated gzip, dropped connection: name the file
                raise IngestError(f"ingest: reading {f.dest} from {source.uri} failed: {exc}") from exc
            if not chunk:
                break
            if size + len(chunk) > (f.size if f.size is not None else max_bytes):
                raise IngestError(
                    f"ingest: {f.dest} from {source.uri} yields more bytes than its listed size "
                    f"({f.size if f.size is not None else f'ingest.max_file_mb = {max_bytes / _MB:g} MB'}); a forged "
                    "archive header or a file growing while read. Nothing was written; check the source."
                )
            dst.write(chunk)
            h.update(chunk)
            size += len(chunk)
            bar.update(len(chunk))
        dst.flush()
        os.fsync(dst.fileno())
    if f.size is not None and size != f.size:
        raise IngestError(
            f"ingest: {f.dest} from {source.uri}: read {size} bytes, the source listed {f.size}; "
            "the source changed or the transfer was cut short. Run ingest again."
        )
    return {
        "kind": f.kind,
        "split": f.split,
        "category": f.category,
        "size": size,
        "sha256": h.hexdigest(),
    }


def copy_plan(source: Source, plan: Plan, name: str, stage: Path, max_file_mb: float = 256.0) -> dict[str, Any]:
    """Copy the planned files into ``stage/<name>/`` and return this source's manifest."""
    dest_root = (stage / name).resolve()
    dest_root.mkdir(parents=True)
    for folder in sorted({(dest_root / f.dest).parent for f in plan.files}):
        folder.mkdir(parents=True, exist_ok=True)
    total = sum(f.size or 0 for f in plan.files)
    ordered = sorted(plan.files, key=lambda f: f.order)  # the source's order: tar.gz reads forwards only
    with _progress(total, f"ingest {name}") as bar:
        if source.parallel_reads:
            # Per-file cost is syscalls and waiting (open, fsync, S3 round trips), not Python: threads overlap it.
            with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
                futures = [pool.submit(_copy_file, source, f, dest_root, bar, max_file_mb * _MB) for f in ordered]
                try:
                    recs = [fut.result() for fut in futures]
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        else:
            recs = [_copy_file(source, f, dest_root, bar, max_file_mb * _MB) for f in ordered]
    for dirpath, _, _ in os.walk(dest_root, topdown=False):  # directory entries reach the disk before the rename
        fsync_path(Path(dirpath))
    records = [{"path": f"{name}/{f.dest}", "source": name, **rec} for f, rec in zip(ordered, recs, strict=True)]
    return _sorted_manifest(
        {
            "categories": plan.categories,
            "sources": [{"name": name, "kind": source.kind, "uri": source.uri, "categories": plan.categories}],
            "files": records,
            "refused": _records(name, plan.refused),
            "skipped": _records(name, plan.skipped),
        }
    )


# --- the step ----------------------------------------------------------------------------------------------


def run_ingest(
    params: IngestParams, append: bool = False, name: str | None = None, s3_page_size: int | None = None
) -> IngestResult:
    """Ingest ``params.source`` into ``params.out`` (see the module docstring for the rules)."""
    shown_out = Path(params.out)
    out = Path(os.path.abspath(params.out))  # "." and "x/.." become real names: the temp folder goes beside
    if out.parent == out:
        raise IngestError(f"ingest: --out {params.out} is the filesystem root; choose a dataset folder")
    with open_source(params.source, params.s3_endpoint_url, params.s3_max_attempts, s3_page_size) as source:
        name = name or source.default_name
        why = check_source_name(name)
        if why:
            raise IngestError(f"ingest: {why}")
        _check_no_overlap(source, out)
        existing = read_existing(out)
        if existing is not None and append:
            clash = [s for s in existing["sources"] if s["name"] == name]
            if clash and (clash[0]["kind"], clash[0]["uri"]) != (source.kind, source.uri):
                raise IngestError(
                    f"ingest: --out {out} already has a source named {name!r} from {clash[0]['kind']} "
                    f"{clash[0]['uri']}; pass another --name to add {source.uri} as a new source. Nothing was changed."
                )
        if existing is not None and not append:
            ours = (name, source.kind, source.uri)
            if [(s["name"], s["kind"], s["uri"]) for s in existing["sources"]] != [ours]:
                held = ", ".join(f"{s['name']} ({s['kind']} {s['uri']})" for s in existing["sources"])
                raise IngestError(
                    f"ingest: --out {out} already holds a dataset from {held}; this run ingests {source.kind} "
                    f"{source.uri} as {name!r}. Pass --append to add it as another source, or choose another "
                    "--out. Nothing was changed."
                )

        plan = enforce_size_limits(source.plan(), params, out)
        if not plan.files:
            raise IngestError(
                f"ingest: no files to ingest in {source.uri} ({len(plan.refused)} refused, {len(plan.skipped)} "
                "skipped); expected one subfolder of photos per category"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = _sibling_dir(out, "ingest")
        try:
            new = copy_plan(source, plan, name, stage, params.max_file_mb)
            action = _commit(out, stage, name, new, existing, append)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return IngestResult(
        out=shown_out,
        name=name,
        action=action,
        files=len(new["files"]),
        bytes=sum(f["size"] for f in new["files"]),
        categories=new["categories"],
        refused=new["refused"],
        skipped=new["skipped"],
    )


def _sibling_dir(out: Path, what: str) -> Path:
    """A new hidden folder beside ``out`` (same filesystem, so renames are atomic; made with the umask)."""
    while True:
        path = out.parent / f".{out.name}.{what}-{secrets.token_hex(6)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _commit(
    out: Path, stage: Path, name: str, new: dict[str, Any], existing: dict[str, Any] | None, append: bool
) -> str:
    """Move the staged source into ``out``; returns what happened."""
    if existing is None or not append:
        # A fresh dataset, or the same single source again (checked before copying): the staged folder
        # becomes --out.
        atomic_write_json(stage / MANIFEST, new)
        fsync_path(stage)
        if existing is None:
            if out.exists():
                out.rmdir()  # empty (read_existing checked); rename cannot replace a folder in one step otherwise
            os.rename(stage, out)
            action = "created"
        else:
            old = _sibling_dir(out, "old")
            os.rename(out, old / "data")
            try:
                os.rename(stage, out)
            except BaseException:
                os.rename(old / "data", out)
                raise
            shutil.rmtree(old, ignore_errors=True)
            action = "replaced"
        fsync_path(out.parent)
        return action

    if name in {s["name"] for s in existing["sources"]}:
        if _contribution(existing, name) == _contribution(new, name):
            return "unchanged"
        raise IngestError(
            f"ingest: --out {out} already has a source named {name!r} with different content; appending would "
            "change it. Pass another --name to add this as a new source, or re-ingest into a new --out."
        )
    merged = merge_manifests(existing, new)
    # The folder first, then the manifest: a crash in between leaves data/<name>/ unlisted, which the next
    # run reports (it never deletes it) instead of a manifest pointing at files that are not there.
    os.rename(stage / name, out / name)
    fsync_path(out)
    atomic_write_json(out / MANIFEST, merged)
    return "appended"


def summary(result: IngestResult) -> str:
    mb = result.bytes / 1e6
    return (
        f"ingest: {result.action} {result.out} ({result.name}): {result.files} files, {mb:.1f} MB, "
        f"{len(result.categories)} categories, {len(result.refused)} refused, {len(result.skipped)} skipped"
    )
