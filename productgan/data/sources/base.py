"""What every ingest source shares: a listing of entries, a plan (what goes where), and the photo layout.

A source lists what it holds (``Listed``), without reading contents. ``plan_photos`` turns a listing into a
``Plan``: accepted files with their category and destination below ``data/<source>/``, plus what was refused
(unsafe) or skipped (junk), each with a reason. Ingest then streams the accepted files' bytes through
``Source.open`` in the source's own order (tar.gz can only be read forwards cheaply).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from productgan.data.safety import junk_reason, normalize_member_path


class IngestError(RuntimeError):
    """Ingest cannot go on; the message names the file, the step and the fix."""


@dataclass(frozen=True)
class Listed:
    """One entry a source holds: its name as the source spells it and a handle to read it later."""

    path: str
    size: int | None
    ref: Any
    refused: str | None = None  # set by the source for entries it can tell are unsafe (links, devices)


@dataclass(frozen=True)
class PlannedFile:
    """An accepted file: where it goes below data/<source>/ and what it is."""

    dest: str
    kind: str  # image | idx-images | idx-labels
    split: str | None
    category: str | None
    size: int | None
    ref: Any
    order: int  # position in the source's listing; files are read in this order


@dataclass
class Plan:
    files: list[PlannedFile]
    categories: list[str]
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path in source, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def display_path(path: str) -> str:
    """``path`` safe to print and store as UTF-8 JSON (undecodable bytes become U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Source(ABC):
    """A place product photos come from. Use as a context manager (archives and clients hold handles)."""

    kind: str
    uri: str
    default_name: str
    parallel_reads: bool = False  # may several threads call open() at once (folders, S3; not a tar stream)

    @abstractmethod
    def plan(self) -> Plan: ...

    @abstractmethod
    def open(self, f: PlannedFile) -> contextlib.AbstractContextManager[BinaryIO]: ...

    def local_path(self) -> str | None:
        """The local path this source reads (checked against --out), or None for remote sources."""
        return None

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to close
        return None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wrapper_folder(paths: list[str]) -> str | None:
    """The top-level folder an archive wraps its category folders in, or None.

    All files must sit under one top-level folder, and that folder must look like a wrapper: it holds no
    file directly, or it holds two or more subfolders. So ``catalog/{Bag,Coat}/x.png`` (and a README beside
    them) is a wrapper, while ``Bag/a.png`` + ``Bag/side/b.png`` is one category with a nested folder.
    """
    if not paths or not all("/" in p for p in paths):
        return None
    tops = {p.split("/", 1)[0] for p in paths}
    if len(tops) != 1:
        return None
    inner = [p.split("/", 1)[1] for p in paths]
    loose = any("/" not in p for p in inner)
    subfolders = {p.split("/", 1)[0] for p in inner if "/" in p}
    return tops.pop() if subfolders and (not loose or len(subfolders) >= 2) else None


def plan_photos(listed: Iterable[Listed], root_category: str, strip_wrapper: bool = False) -> Plan:
    """The category layout shared by folders, archives and S3 prefixes.

    ``<category>/<file>`` (deeper folders: the first-level folder is the category, the rest of the path is
    kept); with no subfolders at all, every file belongs to one category named ``root_category``. Archives
    (``strip_wrapper``) may wrap that layout in one top-level folder, which is then dropped (see
    ``_wrapper_folder``). Files lying loose beside category folders have no category and are skipped.
    """
    refused: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    accepted: list[tuple[str, Listed, int]] = []
    for order, item in enumerate(listed):
        shown = display_path(item.path)
        if item.refused:
            refused.append((shown, item.refused))
            continue
        rel, why = normalize_member_path(item.path)
        if rel is None:
            refused.append((shown, why or "unsafe path"))
            continue
        junk = junk_reason(rel)
        if junk:
            skipped.append((shown, junk))
            continue
        accepted.append((rel, item, order))

    if strip_wrapper and accepted:
        wrapper = _wrapper_folder([rel for rel, _, _ in accepted])
        if wrapper is not None:
            root_category = wrapper
            accepted = [(rel.split("/", 1)[1], item, order) for rel, item, order in accepted]

    nested = any("/" in rel for rel, _, _ in accepted)
    files: list[PlannedFile] = []
    seen: dict[str, str] = {}
    for rel, item, order in accepted:
        shown = display_path(item.path)
        if nested:
            if "/" not in rel:
                skipped.append((shown, "loose file beside the category folders (no category; put it in one)"))
                continue
            category = rel.split("/", 1)[0]
            dest = rel
        else:
            category = root_category
            dest = f"{root_category}/{rel}"
        if dest in seen:
            refused.append((shown, f"duplicate path (same destination as {seen[dest]!r}; not overwritten)"))
            continue
        seen[dest] = shown
        files.append(PlannedFile(dest, "image", None, category, item.size, item.ref, order))

    # A file and a folder with the same name cannot both be written; refuse the file, keep the folder's.
    folders = {d.rsplit("/", 1)[0] for d in seen}
    folders |= {f.rsplit("/", i)[0] for f in folders for i in range(1, f.count("/") + 1)}
    clashing = [f for f in files if f.dest in folders]
    for f in clashing:
        refused.append((seen[f.dest], "a file and a folder share this name (the folder's files are kept)"))
    files = [f for f in files if f.dest not in folders]

    files.sort(key=lambda f: f.dest)
    return Plan(
        files=files,
        categories=sorted({f.category for f in files if f.category is not None}),
        refused=sorted(refused),
        skipped=sorted(skipped),
    )


def read_chunks(fh: BinaryIO, chunk: int = 1 << 20) -> Iterator[bytes]:
    while data := fh.read(chunk):
        yield data
