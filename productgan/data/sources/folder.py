"""A local folder of product photos, one subfolder per category.

Only regular files are taken. Symlinks are refused and never followed, wherever they point: one pointing
out of the folder would pull in files nobody meant to share, and one pointing inside would count a photo
twice; refusing both keeps the dataset exactly the files that are there. FIFOs, sockets and device files
are refused too (reading a FIFO blocks, a device never ends).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from productgan.data.safety import junk_dir_reason, sanitize_source_name
from productgan.data.sources.base import IngestError, Listed, Plan, PlannedFile, Source, display_path, plan_photos


def _special_reason(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file, not a regular file"
    return "not a regular file"


class FolderSource(Source):
    kind = "folder"
    parallel_reads = True

    def __init__(self, path: str | os.PathLike[str]):
        given = Path(path)
        if not given.is_dir():
            raise IngestError(f"ingest: source folder {given} does not exist or is not a folder")
        # The folder the user named may itself be a link (e.g. a mount); links *inside* it are refused.
        self.root = given.resolve()
        self.uri = os.path.abspath(given)
        self._root_category = Path(self.uri).name or "photos"  # the name the user sees, not the link target's
        self.default_name = sanitize_source_name(self._root_category)
        self._skipped_dirs: list[tuple[str, str]] = []

    def local_path(self) -> str:
        return str(self.root)

    def _walk(self, rel: str = "") -> Iterator[Listed]:
        here = self.root / rel if rel else self.root
        with os.scandir(here) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            relpath = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                inside = os.path.commonpath([target, str(self.root)]) == str(self.root)
                where = "inside the source" if inside else f"out of the source (to {display_path(target)})"
                yield Listed(relpath, None, None, refused=f"symlink {where}; links are never followed")
                continue
            if entry.is_dir(follow_symlinks=False):
                why = junk_dir_reason(entry.name)
                if why:
                    self._skipped_dirs.append((display_path(relpath + "/"), why))
                else:
                    yield from self._walk(relpath)
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                yield Listed(relpath, st.st_size, self.root / relpath)
            else:
                yield Listed(relpath, None, None, refused=_special_reason(st.st_mode))

    def plan(self) -> Plan:
        self._skipped_dirs = []
        plan = plan_photos(list(self._walk()), root_category=self._root_category)
        plan.skipped = sorted(plan.skipped + self._skipped_dirs)
        return plan

    @contextlib.contextmanager
    def open(self, f: PlannedFile) -> Iterator[BinaryIO]:
        # O_NOFOLLOW | O_NONBLOCK: if the file was swapped for a link or a FIFO since listing, fail instead
        # of following it or blocking.
        try:
            fd = os.open(f.ref, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            msg = f"ingest: cannot read {f.ref}: {exc}; did the source folder change while ingesting?"
            raise IngestError(msg) from exc
        fh = os.fdopen(fd, "rb")
        with fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IngestError(f"ingest: {f.ref} is no longer a regular file; the source changed while ingesting")
            yield fh
