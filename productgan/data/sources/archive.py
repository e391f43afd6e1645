"""A .zip or .tar / .tar.gz / .tgz (also .tar.bz2, .tar.xz) archive with the folder layout inside.

Members are never extracted with ``extractall``: each accepted member is streamed into a path ingest built
from checked components (``safety.normalize_member_path``), so no member name can steer a write outside
--out. Link members (symlinks, hardlinks), devices, FIFOs and encrypted zip members are refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from productgan.data.safety import sanitize_source_name
from productgan.data.sources.base import IngestError, Listed, Plan, PlannedFile, Source, plan_photos

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ARCHIVE_SUFFIXES = ZIP_SUFFIXES + TAR_SUFFIXES


def archive_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def is_archive_path(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def _zip_refusal(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & 0x1:
        return "encrypted zip member"
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode):  # Unix-made zips record the file type
        if stat.S_ISLNK(mode):
            return "symlink member; links are never followed"
        if not stat.S_ISREG(mode):
            return "special file member (device, FIFO or socket), not a regular file"
    return None


def _tar_refusal(m: tarfile.TarInfo) -> str | None:
    if m.issym():
        return f"symlink member (to {m.linkname!r}); links are never followed"
    if m.islnk():
        return f"hardlink member (to {m.linkname!r}); links are never followed"
    if m.ischr() or m.isblk():
        return "device file member, not a regular file"
    if m.isfifo():
        return "FIFO member, not a regular file"
    if not m.isreg():
        return "unsupported member type, not a regular file"
    return None


class ArchiveSource(Source):
    kind = "archive"

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise IngestError(f"ingest: archive {self.path} does not exist or is not a file")
        self.uri = os.path.abspath(self.path)
        stem = archive_stem(self.path)
        self.default_name = sanitize_source_name(stem)
        self._root_category = stem or "photos"
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        lower = self.path.name.lower()
        try:
            if lower.endswith(ZIP_SUFFIXES):
                self._zip = zipfile.ZipFile(self.path)
            else:
                self._tar = tarfile.open(self.path, "r:*")
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
            raise IngestError(f"ingest: cannot open archive {self.path}: {exc}; is the file complete?") from exc

    def local_path(self) -> str:
        return str(self.path.resolve())

    def _listing(self) -> Iterator[Listed]:
        if self._zip is not None:
            for info in self._zip.infolist():
                if info.is_dir():
                    continue
                why = _zip_refusal(info)
                yield Listed(info.filename, None if why else info.file_size, None if why else info, refused=why)
        else:
            assert self._tar is not None
            try:
                members = self._tar.getmembers()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise IngestError(f"ingest: cannot read archive {self.path}: {exc}; is the file complete?") from exc
            for m in members:
                if m.isdir():
                    continue
                why = _tar_refusal(m)
                yield Listed(m.name, None if why else m.size, None if why else m, refused=why)

    def plan(self) -> Plan:
        return plan_photos(list(self._listing()), root_category=self._root_category, strip_wrapper=True)

    @contextlib.contextmanager
    def open(self, f: PlannedFile) -> Iterator[BinaryIO]:
        # Read errors (bad CRC, truncated stream) surface in the caller's reads; ingest names the member there.
        if self._zip is not None:
            with self._zip.open(f.ref) as fh:
                yield fh
            return
        assert self._tar is not None
        fh = self._tar.extractfile(f.ref)
        if fh is None:
            raise IngestError(f"ingest: {self.path}: member {f.ref.name!r} has no data")
        with fh:
            yield fh

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()
