"""Ingest: every local source kind, the manifest contract, byte-stable re-ingest, --append, and every refusal."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from productgan.cli import cli
from productgan.data.ingest import FORMAT, IngestParams, run_ingest
from productgan.data.safety import junk_reason, normalize_member_path
from productgan.data.sources.base import IngestError
from productgan.data.sources.fashion_mnist import CATEGORIES
from productgan.io import dumps_json, read_json, sha256_file

REPO = Path(__file__).resolve().parents[1]
FM_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz"]


# --- helpers -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_bytes(fmnist_small) -> list[bytes]:
    """A dozen real product photos (Fashion-MNIST images) as PNG files' bytes."""
    from PIL import Image

    out = []
    for img in fmnist_small["train"][0][:12]:
        buf = io.BytesIO()
        Image.fromarray(img[0]).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def make_shop(root: Path, photos: list[bytes], layout: dict[str, int] | None = None) -> dict[str, bytes]:
    """A photo folder: one subfolder per category. Returns {relative path: bytes}."""
    layout = layout or {"Bag": 2, "Sneaker": 2}
    files, i = {}, 0
    for category, n in layout.items():
        for _ in range(n):
            rel = f"{category}/photo_{i:02d}.png"
            (root / category).mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(photos[i % len(photos)] + bytes([i]))  # distinct bytes per file
            files[rel] = (root / rel).read_bytes()
            i += 1
    return files


def tree_digest(root: Path) -> str:
    """sha256 over every path (files and folders) and every file's bytes below ``root``; mtimes ignored."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        h.update(f"{rel}|{'d' if p.is_dir() else 'f'}\n".encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def ingest(source: Path | str, out: Path, **kw):
    return run_ingest(IngestParams(source=str(source), out=str(out)), **kw)


def manifest(out: Path) -> dict:
    return read_json(out / "manifest.json")


# --- params and small rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, ok",
    [("Bag/a.png", "Bag/a.png"), ("./Bag//a.png", "Bag/a.png"), ("../a.png", None), ("Bag/../../a.png", None),
     ("/etc/passwd", None), ("C:/x.png", None), ("..\\x.png", None), ("a\x00b", None)],
)
def test_member_paths(name, ok):
    assert normalize_member_path(name)[0] == ok


def test_junk_rules():
    for junk in [".DS_Store", "Bag/Thumbs.db", "Bag/desktop.ini", "__MACOSX/Bag/a.png", "Bag/._a.png",
                 ".git/config", "Bag/.hidden.png"]:
        assert junk_reason(junk), junk
    assert junk_reason("Bag/a.png") is None and junk_reason("Bag/notes.txt") is None


# --- folder ------------------------------------------------------------------------------------------------


def test_folder_layout_and_manifest(tmp_path, photo_bytes):
    src = tmp_path / "shop"
    files = make_shop(src, photo_bytes, {"Sneaker": 2, "Bag": 3})
    (src / "Sneaker" / "side" / "left").mkdir(parents=True)  # deeper folders: first level is the category
    (src / "Sneaker" / "side" / "left" / "x.jpg").write_bytes(photo_bytes[5])
    files["Sneaker/side/left/x.jpg"] = photo_bytes[5]
    (src / "Bag" / "notes.bin").write_bytes(b"not an image")  # kept: preprocess decodes and refuses it
    files["Bag/notes.bin"] = b"not an image"
    out = tmp_path / "data"

    res = ingest(src, out)

    assert res.action == "created" and res.files == len(files)
    m = manifest(out)
    assert (out / "manifest.json").read_text() == dumps_json(m)  # stable JSON
    assert m["format"] == FORMAT and m["categories"] == ["Bag", "Sneaker"]
    assert m["sources"] == [{"name": "shop", "kind": "folder", "uri": str(src), "categories": ["Bag", "Sneaker"]}]
    assert [f["path"] for f in m["files"]] == sorted(f"shop/{rel}" for rel in files)
    for f in m["files"]:
        rel = f["path"].removeprefix("shop/")
        data = files[rel]
        assert (out / f["path"]).read_bytes() == data  # original bytes
        assert f == {"path": f"shop/{rel}", "source": "shop", "kind": "image", "split": None,
                     "category": rel.split("/")[0], "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert m["refused"] == [] and m["skipped"] == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_folder_without_subfolders_is_one_category(tmp_path, photo_bytes):
    src = tmp_path / "sneakers"
    src.mkdir()
    for i in range(3):
        (src / f"s{i}.png").write_bytes(photo_bytes[i])
    out = tmp_path / "data"
    ingest(src, out)
    m = manifest(out)
    assert m["categories"] == ["sneakers"]
    assert [f["path"] for f in m["files"]] == [f"sneakers/sneakers/s{i}.png" for i in range(3)]
    assert {f["category"] for f in m["files"]} == {"sneakers"}


def test_folder_refuses_links_and_special_files_and_skips_junk(tmp_path, photo_bytes):
    src = tmp_path / "shop"
    make_shop(src, photo_bytes)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"SECRET-OUTSIDE-THE-SOURCE")
    os.symlink(secret, src / "Bag" / "outside.png")
    os.symlink(src / "Bag" / "photo_00.png", src / "Bag" / "inside.png")
    os.symlink(tmp_path, src / "Linked")  # a folder link out of the source
    os.mkfifo(src / "Bag" / "pipe.png")
    sock = socket.socket(socket.AF_UNIX)
    sock_path = src / "Bag" / "s.sock"
    sock.bind(str(sock_path))
    for junk in [".DS_Store", "Bag/Thumbs.db", "Sneaker/desktop.ini", "Bag/._photo_00.png", "Bag/.hidden.png",
                 "README.txt"]:
        (src / junk).write_bytes(b"junk")
    (src / "__MACOSX" / "Bag").mkdir(parents=True)
    (src / "__MACOSX" / "Bag" / "._photo_00.png").write_bytes(b"junk")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_bytes(b"junk")
    out = tmp_path / "data"

    try:
        res = ingest(src, out)
    finally:
        sock.close()

    m = manifest(out)
    assert [f["path"] for f in m["files"]] == ["shop/Bag/photo_00.png", "shop/Bag/photo_01.png",
                                               "shop/Sneaker/photo_02.png", "shop/Sneaker/photo_03.png"]
    refused = {r["path"]: r["reason"] for r in m["refused"]}
    assert set(refused) == {"Bag/outside.png", "Bag/inside.png", "Linked", "Bag/pipe.png", "Bag/s.sock"}
    assert "out of the source" in refused["Bag/outside.png"] and "never followed" in refused["Bag/outside.png"]
    assert "inside the source" in refused["Bag/inside.png"]
    assert "out of the source" in refused["Linked"]
    assert "FIFO" in refused["Bag/pipe.png"] and "socket" in refused["Bag/s.sock"]
    skipped = {r["path"]: r["reason"] for r in m["skipped"]}
    assert set(skipped) == {".DS_Store", "Bag/Thumbs.db", "Sneaker/desktop.ini", "Bag/._photo_00.png",
                            "Bag/.hidden.png", "README.txt", "__MACOSX/", ".git/"}
    assert "AppleDouble" in skipped["Bag/._photo_00.png"] and "no category" in skipped["README.txt"]
    assert all(r["source"] == "shop" for r in m["refused"] + m["skipped"])
    assert res.refused == m["refused"] and res.skipped == m["skipped"]
    # the link target's bytes are nowhere in the output
    assert not any(b"SECRET" in p.read_bytes() for p in out.rglob("*") if p.is_file())


# --- archives ----------------------------------------------------------------------------------------------


def _write_archive(path: Path, members: dict[str, bytes]) -> Path:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        mode = "w:gz" if path.name.endswith((".tar.gz", ".tgz")) else "w"
        with tarfile.open(path, mode) as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz", ".tgz"])
def test_archive_with_wrapper_folder_equals_folder_ingest(tmp_path, photo_bytes, suffix):
    src = tmp_path / "catalog"
    files = make_shop(src, photo_bytes, {"Bag": 2, "Coat": 1})
    archive = _write_archive(tmp_path / f"catalog{suffix}", {f"catalog/{rel}": data for rel, data in files.items()})

    ingest(src, tmp_path / "from_folder")
    ingest(archive, tmp_path / "from_archive")

    a, b = manifest(tmp_path / "from_folder"), manifest(tmp_path / "from_archive")
    assert b["sources"] == [{"name": "catalog", "kind": "archive", "uri": str(archive), "categories": ["Bag", "Coat"]}]
    assert a["files"] == b["files"] and a["categories"] == b["categories"]
    for f in b["files"]:
        assert sha256_file(tmp_path / "from_archive" / f["path"]) == f["sha256"]


def test_flat_archive_is_one_category_named_after_it(tmp_path, photo_bytes):
    archive = _write_archive(tmp_path / "Ankle boots.zip", {"a.png": photo_bytes[0], "b.png": photo_bytes[1]})
    ingest(archive, tmp_path / "data")
    m = manifest(tmp_path / "data")
    assert m["sources"][0]["name"] == "Ankle-boots" and m["categories"] == ["Ankle boots"]
    assert [f["path"] for f in m["files"]] == ["Ankle-boots/Ankle boots/a.png", "Ankle-boots/Ankle boots/b.png"]


@pytest.mark.parametrize(
    "members, expect",
    [
        # a wrapper folder around category folders, a README beside them (skipped: no category)
        (["catalog/Bag/a.png", "catalog/Coat/b.png", "catalog/README.txt"], ["shop/Bag/a.png", "shop/Coat/b.png"]),
        # one category folder wrapped: the category is the inner folder
        (["catalog/Bag/a.png", "catalog/Bag/b.png"], ["shop/Bag/a.png", "shop/Bag/b.png"]),
        # one category with a nested folder: not a wrapper
        (["Bag/a.png", "Bag/side/b.png"], ["shop/Bag/a.png", "shop/Bag/side/b.png"]),
        # one folder of photos: one category named after it
        (["shoes/a.png", "shoes/b.png"], ["shop/shoes/a.png", "shop/shoes/b.png"]),
    ],
)
def test_archive_wrapper_folder_rules(tmp_path, members, expect):
    archive = _write_archive(tmp_path / "shop.tar", {m: b"x" + m.encode() for m in members})
    ingest(archive, tmp_path / "data")
    assert [f["path"] for f in manifest(tmp_path / "data")["files"]] == expect


def _tar_member(tf: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_tar_refuses_unsafe_members_and_writes_nothing_outside_out(tmp_path, photo_bytes):
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        _tar_member(tf, "Bag/ok.png", data=photo_bytes[0])
        _tar_member(tf, "../evil1.png", data=b"EVIL")
        _tar_member(tf, "Bag/../../evil2.png", data=b"EVIL")
        _tar_member(tf, "/tmp/evil3.png", data=b"EVIL")
        _tar_member(tf, "Bag/link.png", tarfile.SYMTYPE, link="/etc/passwd")
        _tar_member(tf, "Bag/hard.png", tarfile.LNKTYPE, link="Bag/ok.png")
        _tar_member(tf, "Bag/fifo.png", tarfile.FIFOTYPE)
        _tar_member(tf, "Bag/dev.png", tarfile.CHRTYPE)
        _tar_member(tf, "__MACOSX/Bag/._ok.png", data=b"junk")
        _tar_member(tf, "Bag/.DS_Store", data=b"junk")
        _tar_member(tf, "Bag/ok.png", data=b"second copy")  # same name twice: the first is kept
    out = work / "data"
    before_parent = sorted(p.name for p in work.iterdir())
    before_tmp = sorted(p.name for p in tmp_path.iterdir())

    ingest(archive, out)

    assert sorted(p.name for p in work.iterdir()) == sorted(before_parent + ["data"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before_tmp
    assert not Path("/tmp/evil3.png").exists() or Path("/tmp/evil3.png").read_bytes() != b"EVIL"
    assert not any(b"EVIL" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != archive)
    m = manifest(out)
    assert [f["path"] for f in m["files"]] == ["evil/Bag/ok.png"]
    assert (out / "evil/Bag/ok.png").read_bytes() == photo_bytes[0]
    refused = {r["path"]: r["reason"] for r in m["refused"]}
    assert set(refused) == {"../evil1.png", "Bag/../../evil2.png", "/tmp/evil3.png", "Bag/link.png",
                            "Bag/hard.png", "Bag/fifo.png", "Bag/dev.png", "Bag/ok.png"}
    assert "'..'" in refused["../evil1.png"] and "absolute" in refused["/tmp/evil3.png"]
    assert "symlink" in refused["Bag/link.png"] and "hardlink" in refused["Bag/hard.png"]
    assert "FIFO" in refused["Bag/fifo.png"] and "device" in refused["Bag/dev.png"]
    assert "duplicate" in refused["Bag/ok.png"]
    assert {r["path"] for r in m["skipped"]} == {"__MACOSX/Bag/._ok.png", "Bag/.DS_Store"}


def test_zip_refuses_unsafe_members(tmp_path, photo_bytes):
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "shop.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Bag/ok.png", photo_bytes[0])
        zf.writestr("../evil1.png", b"EVIL")
        zf.writestr("/abs/evil2.png", b"EVIL")
        zf.writestr("..\\evil3.png", b"EVIL")
        link = zipfile.ZipInfo("Bag/link.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        fifo = zipfile.ZipInfo("Bag/fifo.png")
        fifo.create_system = 3
        fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
        zf.writestr(fifo, b"")
    before = sorted(p.name for p in work.iterdir())

    ingest(archive, work / "data")

    assert sorted(p.name for p in work.iterdir()) == sorted(before + ["data"])
    assert not any(b"EVIL" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != archive)
    m = manifest(work / "data")
    assert [f["path"] for f in m["files"]] == ["shop/Bag/ok.png"]
    refused = {r["path"]: r["reason"] for r in m["refused"]}
    assert set(refused) == {"../evil1.png", "/abs/evil2.png", "..\\evil3.png", "Bag/link.png", "Bag/fifo.png"}
    assert "symlink" in refused["Bag/link.png"] and "backslash" in refused["..\\evil3.png"]


def test_corrupt_archive_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 this is not a tarball")
    with pytest.raises(IngestError, match="broken.tar.gz"):
        ingest(bad, tmp_path / "data")
    assert not (tmp_path / "data").exists()


# --- re-ingest, replacement and refusals of --out ----------------------------------------------------------


def test_non_utf8_file_name_is_refused_and_reported(tmp_path, photo_bytes):
    src = tmp_path / "shop"
    make_shop(src, photo_bytes)
    fd = os.open(os.fsencode(src / "Bag") + b"/caf\xe9.png", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"latin-1 name")
    os.close(fd)
    ingest(src, tmp_path / "data")
    m = manifest(tmp_path / "data")
    assert [(r["path"], r["reason"]) for r in m["refused"]] == [("Bag/caf\ufffd.png", "name is not valid UTF-8")]
    assert len(m["files"]) == 4


def test_reingest_is_byte_identical_and_replaces_atomically(tmp_path, photo_bytes):
    src = tmp_path / "shop"
    make_shop(src, photo_bytes)
    os.mkfifo(src / "Bag" / "pipe")  # refusals are part of the output too
    (src / ".DS_Store").write_bytes(b"junk")
    out = tmp_path / "data"

    assert ingest(src, out).action == "created"
    first = tree_digest(out)
    manifest_sha = sha256_file(out / "manifest.json")
    for p in src.rglob("*"):  # mtimes must not matter
        os.utime(p, (1_000_000, 1_000_000), follow_symlinks=False)
    assert ingest(src, out).action == "replaced"

    assert tree_digest(out) == first
    assert sha256_file(out / "manifest.json") == manifest_sha
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "shop"]  # temp and old folders are gone


def test_out_with_user_files_is_never_replaced(tmp_path, photo_bytes):
    src = tmp_path / "shop"
    make_shop(src, photo_bytes)
    out = tmp_path / "data"
    out.mkdir()
    (out / "thesis.txt").write_text("my work")
    with pytest.raises(IngestError, match="not a dataset written by `productgan ingest`"):
        ingest(src, out)
    assert (out / "thesis.txt").read_text() == "my work" and sorted(os.listdir(out)) == ["thesis.txt"]

    out2 = tmp_path / "data2"
    ingest(src, out2)
    (out2 / "shop" / "Bag" / "notes.txt").write_text("added by hand")
    with pytest.raises(IngestError, match="shop/Bag/notes.txt"):
        ingest(src, out2)
    assert (out2 / "shop" / "Bag" / "notes.txt").read_text() == "added by hand"


def test_other_source_without_append_is_refused(tmp_path, photo_bytes):
    a, b = tmp_path / "shop_a", tmp_path / "shop_b"
    make_shop(a, photo_bytes)
    make_shop(b, photo_bytes, {"Coat": 1})
    out = tmp_path / "data"
    ingest(a, out)
    before = tree_digest(out)
    with pytest.raises(IngestError, match="--append"):
        ingest(b, out)
    assert tree_digest(out) == before


def test_out_overlapping_the_source_is_refused(tmp_path, photo_bytes):
    src = tmp_path / "shop"
    make_shop(src, photo_bytes)
    with pytest.raises(IngestError, match="overlap"):
        ingest(src, src / "Bag" / "data")
    assert not (src / "Bag" / "data").exists()


def test_empty_source_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"junk")
    with pytest.raises(IngestError, match="no files to ingest"):
        ingest(tmp_path / "empty", tmp_path / "data")
    assert sorted(os.listdir(tmp_path)) == ["empty"]


# --- append ------------------------------------------------------------------------------------------------


def test_append_merges_sources_and_is_idempotent(tmp_path, photo_bytes):
    shop1 = tmp_path / "shop1"
    make_shop(shop1, photo_bytes, {"Sneaker": 1, "Bag": 1})
    shop2 = tmp_path / "src2"
    files2 = make_shop(shop2, photo_bytes, {"Coat": 1, "Bag": 1, "Anorak": 1})
    archive = _write_archive(tmp_path / "shop2.zip", files2)
    out = tmp_path / "data"
    ingest(shop1, out)

    assert ingest(archive, out, append=True).action == "appended"

    m = manifest(out)
    assert m["categories"] == ["Bag", "Sneaker", "Anorak", "Coat"]  # existing order, new ones appended sorted
    assert [s["name"] for s in m["sources"]] == ["shop1", "shop2"]
    assert m["sources"][1]["categories"] == ["Anorak", "Bag", "Coat"]
    assert [f["path"] for f in m["files"]] == sorted(
        ["shop1/Bag/photo_01.png", "shop1/Sneaker/photo_00.png"] + [f"shop2/{rel}" for rel in files2]
    )
    assert (out / "manifest.json").read_text() == dumps_json(m)
    for f in m["files"]:
        assert sha256_file(out / f["path"]) == f["sha256"]

    # the same source again: a no-op
    digest = tree_digest(out)
    assert ingest(archive, out, append=True).action == "unchanged"
    assert tree_digest(out) == digest

    # the same name with other content: refused, nothing changed
    _write_archive(archive, {**files2, "Coat/new.png": photo_bytes[9]})
    with pytest.raises(IngestError, match="different content"):
        ingest(archive, out, append=True)
    assert tree_digest(out) == digest

    # a name already used by another source: refused before anything is copied
    with pytest.raises(IngestError, match="another --name"):
        ingest(shop2, out, append=True, name="shop1")
    assert tree_digest(out) == digest

    # under a new name it is added
    assert ingest(archive, out, append=True, name="shop2-v2").action == "appended"
    assert [s["name"] for s in manifest(out)["sources"]] == ["shop1", "shop2", "shop2-v2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "shop1", "shop2.zip", "src2"]


# --- Fashion-MNIST -----------------------------------------------------------------------------------------


def _idx_gz(path: Path, magic: bytes, dims: tuple[int, ...], payload: bytes) -> None:
    header = magic + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(gzip.compress(header + payload, mtime=0))


@pytest.fixture()
def tiny_fmnist(tmp_path, fmnist_small) -> Path:
    """The four Fashion-MNIST files with the first 50 real images of each split."""
    d = tmp_path / "fm"
    d.mkdir()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = fmnist_small[split]
        _idx_gz(d / f"{prefix}-images-idx3-ubyte.gz", b"\x00\x00\x08\x03", (50, 28, 28), x[:50].tobytes())
        _idx_gz(d / f"{prefix}-labels-idx1-ubyte.gz", b"\x00\x00\x08\x01", (50,), y[:50].astype("uint8").tobytes())
    return d


def test_fashion_mnist_from_a_folder(tmp_path, tiny_fmnist):
    out = tmp_path / "data"
    res = ingest(f"fashion-mnist:{tiny_fmnist}", out)
    assert res.files == 4 and res.categories == CATEGORIES
    m = manifest(out)
    assert m["categories"] == CATEGORIES
    assert m["sources"] == [{"name": "fashion-mnist", "kind": "fashion-mnist", "uri": f"fashion-mnist:{tiny_fmnist}",
                             "categories": CATEGORIES}]
    expect = {
        "fashion-mnist/t10k-images-idx3-ubyte.gz": ("idx-images", "test"),
        "fashion-mnist/t10k-labels-idx1-ubyte.gz": ("idx-labels", "test"),
        "fashion-mnist/train-images-idx3-ubyte.gz": ("idx-images", "train"),
        "fashion-mnist/train-labels-idx1-ubyte.gz": ("idx-labels", "train"),
    }
    assert [f["path"] for f in m["files"]] == list(expect)
    for f in m["files"]:
        original = (tiny_fmnist / Path(f["path"]).name).read_bytes()
        assert (out / f["path"]).read_bytes() == original  # byte for byte, still gzip
        assert (f["kind"], f["split"]) == expect[f["path"]] and f["category"] is None
        assert f["size"] == len(original) and f["sha256"] == hashlib.sha256(original).hexdigest()


def _corrupt(d: Path, case: str) -> str:
    """Break the tiny Fashion-MNIST copy one way; returns the file name the error must mention."""
    labels = d / "train-labels-idx1-ubyte.gz"
    images = d / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(labels.read_bytes())
    if case == "missing":
        labels.unlink()
    elif case == "magic":  # a labels file carrying the images magic number
        labels.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + raw[4:], mtime=0))
    elif case == "count":  # 49 labels for 50 images
        _idx_gz(labels, b"\x00\x00\x08\x01", (49,), raw[8:57])
    elif case == "label":
        _idx_gz(labels, b"\x00\x00\x08\x01", (50,), raw[8:57] + b"\x0a")
    elif case == "truncated":
        data = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(data[:-100], mtime=0))
        return images.name
    elif case == "not-gzip":
        labels.write_bytes(raw)
    return labels.name if case != "count" else "train split"


@pytest.mark.parametrize("case", ["missing", "magic", "count", "label", "truncated", "not-gzip"])
def test_fashion_mnist_bad_files_are_refused(tmp_path, tiny_fmnist, case):
    mention = _corrupt(tiny_fmnist, case)
    out = tmp_path / "data"
    with pytest.raises(IngestError, match=mention) as err:
        ingest(f"fashion-mnist:{tiny_fmnist}", out)
    assert "dataset-fashion-mnist" in str(err.value)  # the fix is named
    assert not out.exists()


def test_fashion_mnist_real_through_the_cli(tmp_path, fmnist_dir, cli_env):
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "productgan", "ingest", "--source", "fashion-mnist", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "4 files" in res.stdout and "10 categories" in res.stdout and "0 refused" in res.stdout
    m = manifest(out)
    assert m["sources"][0]["uri"] == "fashion-mnist" and m["categories"] == CATEGORIES
    for name in FM_FILES:
        assert sha256_file(out / "fashion-mnist" / name) == sha256_file(fmnist_dir / name)
    # re-ingest: byte-identical
    digest = tree_digest(out)
    res = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert tree_digest(out) == digest


# --- the command line --------------------------------------------------------------------------------------


def test_cli_prints_refusals_and_fails_cleanly(tmp_path, photo_bytes, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the dataclass defaults apply
    src = tmp_path / "shop"
    make_shop(src, photo_bytes)
    os.mkfifo(src / "Bag" / "pipe.png")
    (src / "Thumbs.db").write_bytes(b"junk")
    runner = CliRunner()

    res = runner.invoke(cli, ["ingest", "--source", str(src), "--out", "data"])
    assert res.exit_code == 0, res.output
    assert "refused Bag/pipe.png: FIFO" in res.output and "skipped Thumbs.db" in res.output
    assert "created data (shop): 4 files" in res.output and "1 refused, 1 skipped" in res.output

    other = tmp_path / "other"
    make_shop(other, photo_bytes, {"Coat": 1})
    res = runner.invoke(cli, ["ingest", "--source", str(other), "--out", "data"])
    assert res.exit_code == 1 and "Error: ingest: --out" in res.output and "already holds" in res.output

    res = runner.invoke(cli, ["ingest", "--source", str(other), "--out", "data", "--append", "--name", "bad/name"])
    assert res.exit_code == 1 and "source name 'bad/name'" in res.output
