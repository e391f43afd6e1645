"""The real Fashion-MNIST (Zalando product photos, 70k, 10 categories) as its four original IDX ``.gz`` files.

The files are copied byte for byte (so the dataset hash equals everyone else's); before that their IDX
headers are checked: gzip, magic number (unsigned bytes, 3 dims for images, 1 for labels), payload length
equal to the header's dimensions, equal image and label counts per split, labels below 10.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import stat
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from productgan.data.sources.base import IngestError, Plan, PlannedFile, Source

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
DIR_ENV = "PRODUCTGAN_FASHION_MNIST"  # where tests and odd machines keep the four files
CATEGORIES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# (split, kind, file name, IDX dimensions)
FILES = (
    ("train", "idx-images", "train-images-idx3-ubyte.gz", 3),
    ("train", "idx-labels", "train-labels-idx1-ubyte.gz", 1),
    ("test", "idx-images", "t10k-images-idx3-ubyte.gz", 3),
    ("test", "idx-labels", "t10k-labels-idx1-ubyte.gz", 1),
)
_IDX_UBYTE = 0x08
_FIX = (
    "reinstall the originals (`apt-get install --reinstall dataset-fashion-mnist`) or pass "
    "--source fashion-mnist:/dir with the four original .gz files"
)


def read_idx_gz_dims(path: Path, ndim: int, max_label: int | None = None) -> tuple[int, ...]:
    """The dimensions in the IDX header of gzip file ``path``, after checking the whole file against them."""
    with open(path, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raise IngestError(f"ingest: {path}: not a gzip file; {_FIX}")
    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != _IDX_UBYTE or head[3] != ndim:
                raise IngestError(
                    f"ingest: {path}: IDX magic number {head.hex() or '(empty)'} is not {_IDX_UBYTE:06x}{ndim:02x} "
                    f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}); {_FIX}"
                )
            dim_bytes = fh.read(4 * ndim)
            if len(dim_bytes) < 4 * ndim:
                raise IngestError(f"ingest: {path}: IDX header cut short; {_FIX}")
            dims = tuple(int.from_bytes(dim_bytes[4 * i : 4 * i + 4], "big") for i in range(ndim))
            if 0 in dims:
                raise IngestError(f"ingest: {path}: IDX header has an empty dimension {dims}; {_FIX}")
            payload = 0
            while chunk := fh.read(1 << 20):
                payload += len(chunk)
                if max_label is not None and max(chunk) > max_label:
                    raise IngestError(f"ingest: {path}: label {max(chunk)} is not one of the 10 categories; {_FIX}")
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(f"ingest: {path}: corrupt gzip ({exc}); {_FIX}") from exc
    if payload != math.prod(dims):
        raise IngestError(
            f"ingest: {path}: IDX header says {'x'.join(map(str, dims))} = {math.prod(dims)} bytes of data, "
            f"the file holds {payload}; {_FIX}"
        )
    return dims


class FashionMNISTSource(Source):
    kind = "fashion-mnist"
    default_name = "fashion-mnist"

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        # The plain source "fashion-mnist" records the URI "fashion-mnist" wherever the files lie, so every
        # machine ingests the same manifest (the bytes are pinned by sha256 anyway).
        if directory is None:
            self.dir = Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)
            self.uri = "fashion-mnist"
        else:
            self.dir = Path(directory)
            self.uri = f"fashion-mnist:{os.path.abspath(self.dir)}"

    def local_path(self) -> str:
        return str(self.dir.resolve())

    def plan(self) -> Plan:
        if not self.dir.is_dir():
            raise IngestError(
                f"ingest: Fashion-MNIST folder {self.dir} does not exist; install it with "
                "`apt-get install dataset-fashion-mnist`, or pass --source fashion-mnist:/dir"
            )
        files: list[PlannedFile] = []
        counts: dict[str, dict[str, int]] = {}
        for order, (split, kind, name, ndim) in enumerate(FILES):
            path = self.dir / name
            if not path.exists():
                raise IngestError(f"ingest: Fashion-MNIST file {path} is missing; {_FIX}")
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                raise IngestError(f"ingest: {path} is not a regular file; {_FIX}")
            max_label = len(CATEGORIES) - 1 if kind == "idx-labels" else None
            dims = read_idx_gz_dims(path, ndim, max_label)
            counts.setdefault(split, {})[kind] = dims[0]
            files.append(PlannedFile(name, kind, split, None, st.st_size, path, order))
        for split, c in counts.items():
            if c["idx-images"] != c["idx-labels"]:
                raise IngestError(
                    f"ingest: Fashion-MNIST {split} split in {self.dir}: {c['idx-images']} images but "
                    f"{c['idx-labels']} labels; {_FIX}"
                )
        known = {name for _, _, name, _ in FILES}
        skipped = sorted(
            (p.name, "not one of the four Fashion-MNIST files") for p in self.dir.iterdir() if p.name not in known
        )
        return Plan(files=sorted(files, key=lambda f: f.dest), categories=list(CATEGORIES), skipped=skipped)

    @contextlib.contextmanager
    def open(self, f: PlannedFile) -> Iterator[BinaryIO]:
        with open(f.ref, "rb") as fh:
            yield fh
