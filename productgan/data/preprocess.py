"""The preprocess step: an ingested ``data/`` folder -> memory-mappable train/val/test arrays.

Reads ``data/manifest.json`` (written by ingest), decodes every image file and IDX pair, refuses what
cannot be used (with the reason), drops exact duplicates, fits each photo into the ``resolution`` frame at
``aspect`` (square, or e.g. 3:4: productgan.frame) with ``channels`` channels, splits by content hash and
writes ``{split}_images.npy`` (uint8 N×C×H×W), ``{split}_labels.npy`` (int64 N) and ``manifest.json``. The
output folder is built beside ``--out`` and renamed into place at the end, so readers see the old output or
the new one, never a mix.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import multiprocessing
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from productgan.data.arrays import MANIFEST, SPLITS, images_path, labels_path
from productgan.data.decode import DEFAULT_MAX_IMAGE_PIXELS, Refusal, decode_image
from productgan.data.denoise import check as check_denoise
from productgan.data.denoise import denoise_grey_batch, denoise_image
from productgan.data.denoise import library as denoise_library
from productgan.data.idx import IdxError, parse_idx_header, read_idx_bytes
from productgan.data.resize import BACKGROUNDS, RESOLUTIONS, fit_and_pad, fit_and_pad_grey_batch, to_channels
from productgan.data.split import assign_split, pixel_digest
from productgan.frame import SQUARE, frame_size
from productgan.gan.config import start_map
from productgan.io import atomic_write_json, fsync_path, read_json, save_npy_atomic, sha256_bytes, sha256_file
from productgan.lineage import dataset_version
from productgan.params import require

INPUT_FORMAT = "productgan-dataset/1"
OUTPUT_FORMAT = "productgan-prepared/1"
FAILURE_REPORT = "refused.json"
_COPY_CHUNK = 4096  # images copied at a time into the output arrays
# the only files preprocess writes into --out; anything else there means --out is the wrong folder
OUTPUT_FILES = {MANIFEST, FAILURE_REPORT} | {f"{s}_{k}.npy" for s in SPLITS for k in ("images", "labels")}


@dataclass
class PreprocessParams:
    """The ``preprocess`` section of params.yaml: every default and check (params.yaml states what differs)."""

    NOT_MODEL: ClassVar[frozenset[str]] = frozenset({"workers"})  # the output is byte-identical either way

    resolution: int = 28  # 28, 32, 64, 128 or 256 (productgan.data.resize RESOLUTIONS): the longer side
    aspect: str = SQUARE  # W:H of the frame: 3:4 keeps a catalogue's portrait photos (64 -> 48x64) unpadded
    channels: int = 1  # 1 (grey), 3 (RGB) or 4 (RGBA: cut-outs trained with their alpha; photos without are opaque)
    val_fraction: float = 0.1  # share of the train split held out for validation (by content hash)
    test_fraction: float = 0.1  # for sources without an official test split
    dedup: bool = True  # drop exact duplicates (same decoded pixels)
    background: str = "auto"  # padding colour: auto (from the image border) | white | black
    max_refused_fraction: float = 0.2  # fail the step when more of the input than this is refused
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # larger images are refused as decompression bombs (Pillow's)
    workers: int = 0  # decoding processes; 0 = every core this process may use. Never changes the output.
    denoise: str = "none"  # none | median (Pillow) | bilateral (OpenCV, edge-preserving): applied to each decoded
    #                        image before resizing; recorded in the prepared manifest (productgan.data.denoise)
    denoise_size: int = 3  # odd window in pixels (median and bilateral)
    denoise_sigma: float = 25.0  # bilateral: how far apart (grey levels) two values may be and still be averaged

    def __post_init__(self) -> None:
        require(self.workers >= 0, "workers", f"0 (every core) or a number of processes, got {self.workers}")
        require(self.resolution in RESOLUTIONS, "resolution", f"use one of {RESOLUTIONS}, got {self.resolution}")
        try:
            start_map(self.resolution, self.aspect)  # a frame the networks can make
        except ValueError as exc:
            require(False, "aspect", str(exc))
        require(self.channels in (1, 3, 4), "channels", f"use 1 (grey), 3 (RGB) or 4 (RGBA), got {self.channels}")
        require(self.background in BACKGROUNDS, "background", f"use one of {BACKGROUNDS}, got {self.background!r}")
        for key in ("val_fraction", "test_fraction", "max_refused_fraction"):
            require(0.0 <= getattr(self, key) <= 1.0, key, f"must lie in [0, 1], got {getattr(self, key)}")
        for key in ("val_fraction", "test_fraction"):
            require(getattr(self, key) < 1.0, key, "must be below 1 (train needs images)")
        require(self.max_image_pixels > 0, "max_image_pixels", f"must be positive, got {self.max_image_pixels}")
        problem = check_denoise(self.denoise, self.denoise_size, self.denoise_sigma)
        if problem:
            require(False, *problem)


class PreprocessError(RuntimeError):
    """The step cannot produce a trustworthy output; the message says why and what to do."""


@dataclass
class _Batch:
    """Decoded images of one input file (one photo, or every image of an IDX file)."""

    path: str  # relative to the input folder
    official_split: str | None
    is_idx: bool
    images: np.ndarray  # N×C×R×R uint8
    labels: np.ndarray  # N int64, indices into the global categories
    digests: list[bytes]
    keep: np.ndarray = field(init=False)  # not a duplicate of an earlier image
    splits: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.keep = np.ones(len(self.labels), dtype=bool)
        self.splits = []

    def item(self, i: int) -> str:
        return f"{self.path}#{i}" if self.is_idx else self.path


@dataclass
class _Run:
    """What one preprocess pass collected."""

    batches: list[_Batch] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    refused_images: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, source: str | None, path: str, reason: str, images: int = 1) -> None:
        self.refused.append({"source": source, "path": path, "reason": reason})
        self.refused_images += images

    @property
    def used_images(self) -> int:
        return sum(int(len(b.labels)) for b in self.batches)

    def absorb(self, other: _Run) -> None:
        """Append what another pass (one item, one shard) decoded, in order."""
        self.batches += other.batches
        self.refused += other.refused
        self.refused_images += other.refused_images


@dataclass
class _Input:
    """What preprocess needs to know about an ingested ``data/`` folder (and what every shard records of it)."""

    dir: Path
    manifest_path: Path
    manifest_sha256: str
    dataset_hash: str
    categories: list[str]
    sources: dict[str, dict[str, Any]]
    files: list[dict[str, Any]]
    file_count: int


def run_preprocess(
    input_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: PreprocessParams | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Preprocess ``input_dir`` (an ingested data/ folder) into ``out_dir``; returns the written manifest.

    Photos are decoded by ``params.workers`` processes (0: one per core); the output is the same, byte for byte.
    ``progress``: None shows a progress bar only on a terminal.
    """
    params = params or PreprocessParams()
    inp = open_input(input_dir)
    out_dir = Path(out_dir).resolve()
    _check_out_dir(out_dir, inp.dir)
    run = _Run()
    items = plan_items(inp, run)
    for result in decode_items(inp, items, params, progress):
        run.absorb(result)
    return write_prepared(run, inp, out_dir, params)


def open_input(input_dir: str | os.PathLike[str]) -> _Input:
    input_dir = Path(input_dir).resolve()
    manifest_path = input_dir / "manifest.json"
    manifest = _read_input_manifest(manifest_path)
    manifest_sha256 = sha256_file(manifest_path)
    return _Input(
        dir=input_dir,
        manifest_path=manifest_path,
        manifest_sha256=manifest_sha256,
        # the DVC version of the input when it is tracked (data.dvc beside data/), else its manifest's hash
        dataset_hash=dataset_version(input_dir.parent / f"{input_dir.name}.dvc") or manifest_sha256,
        categories=list(manifest["categories"]),
        sources={s.get("name"): s for s in manifest.get("sources") or [] if isinstance(s, dict)},
        files=sorted(manifest["files"], key=lambda f: f["path"]),
        file_count=len(manifest["files"]),
    )


# One unit of decoding work: an IDX pair ("idx", images entry, labels entry) or a photo ("photo", entry).
Item = tuple


def plan_items(inp: _Input, run: _Run) -> list[Item]:
    """The work in the order one process does it (IDX pairs, then photos by path); refusals of the plan
    itself (unknown kinds, unpaired IDX files) go to ``run``."""
    pairs, photos = _plan(inp.files, run)
    return [("idx", images, labels) for images, labels in pairs] + [("photo", entry) for entry in photos]


def decode_item(inp: _Input, item: Item, params: PreprocessParams) -> _Run:
    """Decode one item: a _Run holding its batch (if usable) and its refusals."""
    one = _Run()
    if item[0] == "idx":
        _add_idx_pair(one, inp.dir, item[1], item[2], inp.sources, inp.categories, params)
    else:
        _add_photo(one, inp.dir, item[1], inp.categories, params)
    return one


def worker_count(params: PreprocessParams) -> int:
    if params.workers:
        return params.workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_WORKER: tuple[_Input, PreprocessParams] | None = None  # set in each pool process


def _init_worker(inp: _Input, params: PreprocessParams) -> None:
    global _WORKER
    _WORKER = (inp, params)


def _decode_in_worker(item: Item) -> _Run:
    assert _WORKER is not None
    return decode_item(_WORKER[0], item, _WORKER[1])


def decode_items(
    inp: _Input, items: list[Item], params: PreprocessParams, progress: bool | None = None
) -> Iterator[_Run]:
    """Decoded items in the order of ``items``. Photos go to a pool of ``worker_count(params)`` processes
    (results come back in order, so the output never depends on the number of processes); IDX pairs are
    decoded here (one vectorised pass each)."""
    workers = min(worker_count(params), sum(1 for i in items if i[0] == "photo"))
    bar = tqdm(total=len(items), desc="preprocess", unit="file", disable=_disable_bar(progress))
    with bar:
        if workers <= 1:
            for item in items:
                yield decode_item(inp, item, params)
                bar.update()
            return
        # fork: workers start at once and share the (read-only) input description; nothing here holds a lock
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        photos = [i for i in items if i[0] == "photo"]
        chunk = max(1, min(32, len(photos) // (workers * 8)))
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(inp, params)) as pool:
            decoded = pool.map(_decode_in_worker, photos, chunksize=chunk)
            for item in items:
                yield decode_item(inp, item, params) if item[0] == "idx" else next(decoded)
                bar.update()


def write_prepared(run: _Run, inp: _Input, out_dir: Path, params: PreprocessParams) -> dict[str, Any]:
    """Dedup, split and write what ``run`` decoded from ``inp`` into ``out_dir``; returns the manifest."""
    seen = run.used_images + run.refused_images
    if seen == 0:
        raise PreprocessError(f"preprocess: {inp.manifest_path} lists no images; ingest a source first")
    if run.refused_images / seen > params.max_refused_fraction:
        _fail_refused(run, seen, params, inp.manifest_path, out_dir)

    categories = inp.categories
    if params.dedup:
        _drop_duplicates(run, categories)
    for batch in run.batches:
        batch.splits = [
            assign_split(d, batch.official_split, params.val_fraction, params.test_fraction) if k else ""
            for d, k in zip(batch.digests, batch.keep, strict=True)
        ]

    out_manifest = {
        "format": OUTPUT_FORMAT,
        "categories": categories,
        "resolution": params.resolution,
        "channels": params.channels,
        "counts": {},
        "inputs": {
            "files": inp.file_count,
            "images": seen,
            "used": 0,
            "refused": run.refused_images,
            "duplicates": len(run.duplicates),
        },
        "refused": sorted(run.refused, key=lambda r: r["path"]),
        "duplicates": sorted(run.duplicates, key=lambda d: d["path"]),
        "dataset_hash": inp.dataset_hash,
        "source_manifest_sha256": inp.manifest_sha256,
        "params": output_params(params),
        "pillow": _pillow_version(),
        "denoise_library": denoise_library(params.denoise),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for split in SPLITS:
            out_manifest["counts"][split] = _write_split(tmp, split, run.batches, params, categories)
        out_manifest["inputs"]["used"] = sum(c["total"] for c in out_manifest["counts"].values())
        atomic_write_json(tmp / MANIFEST, out_manifest)
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_manifest


def output_params(params: PreprocessParams) -> dict[str, Any]:
    """The settings the output depends on (the manifest records them); ``workers`` is not one of them."""
    return {k: v for k, v in dataclasses.asdict(params).items() if k != "workers"}


def _disable_bar(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def _pillow_version() -> str:
    import PIL

    return PIL.__version__


def _read_input_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PreprocessError(
            f"preprocess: {path} not found; --input must be a folder written by `productgan ingest`"
        )
    try:
        manifest = read_json(path)
    except ValueError as exc:
        raise PreprocessError(f"preprocess: {path} is not valid JSON ({exc}); re-run ingest") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != INPUT_FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise PreprocessError(f"preprocess: {path}: expected format {INPUT_FORMAT!r}, got {got!r}; re-run ingest")
    for key in ("categories", "files"):
        if not isinstance(manifest.get(key), list):
            raise PreprocessError(f"preprocess: {path}: missing list {key!r}; re-run ingest")
    if len(set(manifest["categories"])) != len(manifest["categories"]):
        raise PreprocessError(f"preprocess: {path}: categories has repeated names; re-run ingest")
    for i, entry in enumerate(manifest["files"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise PreprocessError(f"preprocess: {path}: files[{i}] has no 'path'; re-run ingest")
    return manifest


def _check_out_dir(out_dir: Path, input_dir: Path) -> None:
    """Refuse an --out that would clobber the input or a folder preprocess did not write."""
    if out_dir == input_dir or input_dir.is_relative_to(out_dir) or out_dir.is_relative_to(input_dir):
        raise PreprocessError(f"preprocess: --out {out_dir} overlaps --input {input_dir}; use a separate folder")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise PreprocessError(f"preprocess: --out {out_dir} exists and is not a folder")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUT_FILES)
        if foreign:
            raise PreprocessError(
                f"preprocess: --out {out_dir} holds files preprocess did not write ({', '.join(foreign[:5])}); "
                "it would be replaced as a whole: choose a new or empty folder"
            )


def _plan(files: list[dict[str, Any]], run: _Run) -> tuple[list[tuple[dict, dict]], list[dict]]:
    """IDX image files paired with their label files (same source and split), and the photo files."""
    photos = [f for f in files if f.get("kind") == "image"]
    idx_images = [f for f in files if f.get("kind") == "idx-images"]
    idx_labels = [f for f in files if f.get("kind") == "idx-labels"]
    for f in files:
        if f.get("kind") not in ("image", "idx-images", "idx-labels"):
            run.refuse(f.get("source"), f.get("path", "?"), f"unknown kind {f.get('kind')!r} in data/manifest.json")

    def group(f: dict) -> tuple:
        return f.get("source"), f.get("split")

    pairs, used_labels = [], set()
    for img in idx_images:
        candidates = [lab for lab in idx_labels if group(lab) == group(img)]
        twins = [i for i in idx_images if group(i) == group(img)]
        by_name = img["path"].replace("images", "labels").replace("idx3", "idx1")
        match = [lab for lab in candidates if lab["path"] == by_name]
        if not match and len(candidates) == 1 and len(twins) == 1:
            match = candidates
        if not match:
            run.refuse(img.get("source"), img["path"], "IDX images without a labels file (same source and split)")
            continue
        pairs.append((img, match[0]))
        used_labels.add(match[0]["path"])
    for lab in idx_labels:
        if lab["path"] not in used_labels:
            run.refuse(lab.get("source"), lab["path"], "IDX labels without an images file", images=0)
    return pairs, photos


_LINK_FIX = ("ingest writes none: it was planted after ingest, or DVC checked data/ out as links (then `dvc config "
             "cache.type reflink,hardlink,copy` and `dvc checkout --relink`)")


def _read_listed(input_dir: Path, entry: dict[str, Any]) -> bytes | str:
    """The bytes of a manifest entry, or why they cannot be used.

    data/ may have changed since ingest wrote it, so nothing is followed or trusted: a symlink anywhere on the
    path is refused (it could point anywhere, even at a file with the listed content), a FIFO or device is
    refused without blocking on it, and a size other than the listed one is refused before reading."""
    parts = Path(entry["path"]).parts
    if ".." in parts or Path(entry["path"]).is_absolute():
        return "path points outside the input folder"
    current = input_dir
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return "listed in data/manifest.json but missing on disk; re-run ingest or `dvc checkout`"
        except OSError as exc:
            return f"cannot read: {exc}"
        if stat.S_ISLNK(mode):
            return f"{current.relative_to(input_dir)} is a symlink; {_LINK_FIX}"
    try:  # O_NOFOLLOW: a link swapped in since the check is refused too; O_NONBLOCK: a FIFO does not block
        fd = os.open(current, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return f"cannot read: {exc}"
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file (a FIFO, device or socket in place of the ingested file); re-run ingest"
        size = entry.get("size")
        if isinstance(size, int) and st.st_size != size:
            return (f"size {st.st_size} bytes differs from the {size} in data/manifest.json (changed after ingest); "
                    "re-run ingest")
        try:
            data = fh.read()
        except OSError as exc:
            return f"cannot read: {exc}"
    expected = entry.get("sha256")
    if expected and sha256_bytes(data) != expected:
        return "content differs from the sha256 in data/manifest.json (changed after ingest); re-run ingest"
    return data


def _add_idx_pair(
    run: _Run,
    input_dir: Path,
    images_entry: dict[str, Any],
    labels_entry: dict[str, Any],
    sources: dict[str, dict[str, Any]],
    categories: list[str],
    params: PreprocessParams,
) -> None:
    source, path = images_entry.get("source"), images_entry["path"]
    raw_images, raw_labels = _read_listed(input_dir, images_entry), _read_listed(input_dir, labels_entry)
    if isinstance(raw_images, str) or isinstance(raw_labels, str):
        reason = raw_images if isinstance(raw_images, str) else f"its labels {labels_entry['path']}: {raw_labels}"
        run.refuse(source, path, reason, images=_declared_count(raw_images, path))
        return
    try:
        images = read_idx_bytes(raw_images, path)
        labels = read_idx_bytes(raw_labels, labels_entry["path"])
    except IdxError as exc:
        run.refuse(source, path, str(exc), images=_declared_count(raw_images, path))
        return
    problem = _check_idx(images, labels, labels_entry["path"])
    names = (sources.get(source) or {}).get("categories") or []
    if problem is None and len(labels) and int(labels.max()) >= len(names):
        problem = f"label {int(labels.max())} has no name: source {source!r} lists {len(names)} categories"
    missing = [n for n in names if n not in categories]
    if problem is None and missing:
        problem = f"source {source!r} categories {missing} are not in the manifest's categories"
    if problem is not None:
        run.refuse(source, path, problem, images=max(1, len(images)))
        return
    to_global = np.array([categories.index(n) for n in names], dtype=np.int64)
    digests = [pixel_digest(x) for x in images]  # of the images as decoded: denoising never moves the split
    images = denoise_grey_batch(images, params.denoise, params.denoise_size, params.denoise_sigma)
    pixels = fit_and_pad_grey_batch(images, params.resolution, params.channels, params.background, params.aspect)
    run.batches.append(
        _Batch(path, images_entry.get("split"), True, pixels, to_global[labels.astype(np.int64)], digests)
    )


def _declared_count(raw: bytes | str, name: str) -> int:
    """How many images an unusable IDX file claims to hold (1 when even its header is unreadable)."""
    if isinstance(raw, str):
        return 1
    try:
        head = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(16) if raw[:2] == b"\x1f\x8b" else raw[:16]
        return max(1, parse_idx_header(head, name)[1][0])
    except Exception:  # a corrupt header: count the file as one image
        return 1


def _check_idx(images: np.ndarray, labels: np.ndarray, labels_name: str) -> str | None:
    if images.ndim != 3 or images.dtype != np.uint8:
        return f"IDX images must be uint8 N×H×W, got {images.dtype} with shape {images.shape}"
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        return f"{labels_name}: IDX labels must be integers of shape N, got {labels.dtype} {labels.shape}"
    if len(labels) != len(images):
        return f"{len(images)} images but {len(labels)} labels in {labels_name}"
    if len(labels) and int(labels.min()) < 0:
        return f"{labels_name}: negative label {int(labels.min())}"
    return None


def _add_photo(
    run: _Run, input_dir: Path, entry: dict[str, Any], categories: list[str], params: PreprocessParams
) -> None:
    source, path, category = entry.get("source"), entry["path"], entry.get("category")
    if category not in categories:
        run.refuse(source, path, f"category {category!r} is not one of the manifest's categories")
        return
    data = _read_listed(input_dir, entry)
    if isinstance(data, str):
        run.refuse(source, path, data)
        return
    decoded = decode_image(data, params.max_image_pixels, keep_alpha=params.channels == 4)
    if isinstance(decoded, Refusal):
        run.refuse(source, path, decoded.reason)
        return
    digest = pixel_digest(np.asarray(decoded))
    img = denoise_image(to_channels(decoded, params.channels), params.denoise, params.denoise_size,
                        params.denoise_sigma)
    pixels = fit_and_pad(img, params.resolution, params.background, params.aspect)
    label = np.array([categories.index(category)], dtype=np.int64)
    run.batches.append(_Batch(path, entry.get("split"), False, pixels[None], label, [digest]))


def _drop_duplicates(run: _Run, categories: list[str]) -> None:
    """Keep the first of each set of equal images. Official test images come first, so a training image
    equal to a test image is the one dropped (no test leakage); otherwise the order is by path."""
    kept: dict[bytes, tuple[_Batch, int]] = {}
    ordered = sorted(run.batches, key=lambda b: (b.official_split != "test", b.path))
    for batch in ordered:
        for i, digest in enumerate(batch.digests):
            twin = kept.setdefault(digest, (batch, i))
            if twin != (batch, i):
                batch.keep[i] = False
                run.duplicates.append({
                    "path": batch.item(i),
                    "category": categories[int(batch.labels[i])],
                    "kept": twin[0].item(twin[1]),
                    "kept_category": categories[int(twin[0].labels[twin[1]])],
                })


def _write_split(
    tmp: Path, split: str, batches: list[_Batch], params: PreprocessParams, categories: list[str]
) -> dict[str, Any]:
    """Write one split's arrays (batches in path order, images in file order); return its counts."""
    chosen = [(b, np.array([s == split for s in b.splits], dtype=bool)) for b in batches]
    chosen = [(b, m) for b, m in chosen if m.any()]
    n = sum(int(m.sum()) for _, m in chosen)
    shape = (n, params.channels, *frame_size(params.resolution, params.aspect))
    # filled in place: the whole split never needs a second copy in memory
    images = np.lib.format.open_memmap(images_path(tmp, split), mode="w+", dtype=np.uint8, shape=shape)
    labels = np.empty(n, dtype=np.int64)
    at = 0
    for batch, mask in chosen:
        for start in range(0, len(mask), _COPY_CHUNK):  # chunks: no full-size temporary from fancy indexing
            part = mask[start : start + _COPY_CHUNK]
            k = int(part.sum())
            images[at : at + k] = batch.images[start : start + _COPY_CHUNK][part]
            labels[at : at + k] = batch.labels[start : start + _COPY_CHUNK][part]
            at += k
    images.flush()
    del images
    fsync_path(images_path(tmp, split))
    save_npy_atomic(labels_path(tmp, split), labels)
    per_category = np.bincount(labels, minlength=len(categories))
    return {"total": n, "per_category": {c: int(per_category[i]) for i, c in enumerate(categories)}}


def _publish(tmp: Path, out_dir: Path) -> None:
    """Swap the finished temp folder in for ``out_dir`` (two renames on one filesystem)."""
    _apply_umask(tmp)
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.rename(out_dir, old / "x")
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _apply_umask(folder: Path) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; give the output the usual permissions so other
    users and containers with another uid can read it."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _fail_refused(run: _Run, seen: int, params: PreprocessParams, manifest_path: Path, out_dir: Path) -> None:
    """Write every refusal to ``out_dir/refused.json`` and stop the step with a message that says what to do."""
    report_path = out_dir / FAILURE_REPORT
    refused = sorted(run.refused, key=lambda r: r["path"])
    atomic_write_json(report_path, {
        "status": "failed",
        "refused_images": run.refused_images,
        "images": seen,
        "max_refused_fraction": params.max_refused_fraction,
        "input_manifest": str(manifest_path),
        "refused": refused,
    })
    first = "\n".join(f"  {r['path']}: {r['reason']}" for r in refused[:10])
    more = f"\n  ... and {len(refused) - 10} more" if len(refused) > 10 else ""
    raise PreprocessError(
        f"preprocess: refused {run.refused_images} of {seen} images ({run.refused_images / seen:.1%}), more than "
        f"max_refused_fraction={params.max_refused_fraction} (params.yaml, section preprocess).\n"
        f"First reasons:\n{first}{more}\n"
        f"Every refused file with its reason: {report_path} (input listed in {manifest_path}).\n"
        "Fix or remove those files and re-run ingest, or raise preprocess.max_refused_fraction in params.yaml."
    )

