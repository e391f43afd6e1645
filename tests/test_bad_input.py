"""Bad input not covered elsewhere: encrypted zip members, archive bombs, 16-bit RGB(A) PNGs, and a symlink (or
FIFO, or swapped file) planted in data/ after ingest and before preprocess."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from productgan.data.decode import decode_image
from productgan.data.ingest import IngestParams, run_ingest
from productgan.data.preprocess import PreprocessParams, run_preprocess
from productgan.data.sources.base import IngestError
from productgan.io import read_json

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


@pytest.fixture(scope="module")
def photos(fmnist_small) -> list[bytes]:
    """Real product photos (Fashion-MNIST images) as PNG bytes."""
    out = []
    for img in fmnist_small["train"][0][:8]:
        buf = io.BytesIO()
        Image.fromarray(img[0]).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# --- encrypted zip members ---------------------------------------------------------------------------------


def _zipcrypto(data: bytes, password: bytes, crc: int) -> bytes:
    """PKWARE "traditional" encryption (what `zip -P` writes): a 12-byte header, then the stored bytes."""
    keys = [0x12345678, 0x23456789, 0x34567890]

    def crc_byte(value: int, byte: int) -> int:
        return zlib.crc32(bytes([byte]), value ^ 0xFFFFFFFF) ^ 0xFFFFFFFF

    def update(byte: int) -> None:
        keys[0] = crc_byte(keys[0], byte)
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = crc_byte(keys[2], keys[1] >> 24)

    for byte in password:
        update(byte)
    out = bytearray()
    for byte in bytes(11) + bytes([crc >> 24]) + data:
        temp = (keys[2] | 2) & 0xFFFF
        out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
        update(byte)
    return bytes(out)


def _zip_with_encrypted_member(path: Path, plain: dict[str, bytes], secret: dict[str, bytes], password: bytes) -> None:
    """A zip whose ``secret`` members are really encrypted (stored + ZipCrypto), written byte by byte."""
    body, central = bytearray(), bytearray()
    for name, data in [*plain.items(), *secret.items()]:
        crc, encrypted = zlib.crc32(data), name in secret
        payload = _zipcrypto(data, password, crc) if encrypted else data
        flags = 0x1 if encrypted else 0
        fields = struct.pack("<HHHHHIII", 20, flags, 0, 0, 0x21, crc, len(payload), len(data))
        offset = len(body)
        body += b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name.encode() + payload
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields
                    + struct.pack("<HHHHHI", len(name), 0, 0, 0, 0, 0) + struct.pack("<I", offset) + name.encode())
    n = len(plain) + len(secret)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, n, n, len(central), len(body), 0)
    path.write_bytes(bytes(body + central + end))


def test_encrypted_zip_members_are_refused(tmp_path, photos):
    archive = tmp_path / "shop.zip"
    _zip_with_encrypted_member(archive, {"Bag/open.png": photos[0]}, {"Bag/locked.png": photos[1]}, b"hunter2")
    with zipfile.ZipFile(archive) as zf:  # the fixture is a real encrypted member: zipfile decrypts it
        assert zf.getinfo("Bag/locked.png").flag_bits & 0x1
        assert zf.read("Bag/locked.png", pwd=b"hunter2") == photos[1]

    result = run_ingest(IngestParams(source=str(archive), out=str(tmp_path / "data")))
    manifest = read_json(tmp_path / "data" / "manifest.json")
    assert [f["path"] for f in manifest["files"]] == ["shop/Bag/open.png"]
    assert {r["path"]: r["reason"] for r in result.refused} == {"Bag/locked.png": "encrypted zip member"}
    assert not (tmp_path / "data" / "shop" / "Bag" / "locked.png").exists()


# --- archive bombs -----------------------------------------------------------------------------------------


def _zip_bomb(path: Path, photos: list[bytes], bomb_mb: int) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("Bag/a.png", photos[0])
        zf.writestr("Bag/b.png", photos[1])
        zf.writestr("Bag/bomb.png", bytes(bomb_mb * MB))  # zeros: ~1000x smaller in the archive


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_member_expanding_over_the_limit_is_refused_unread(tmp_path, photos, kind):
    archive = tmp_path / f"shop.{kind}"
    if kind == "zip":
        _zip_bomb(archive, photos, 16)
    else:
        with tarfile.open(archive, "w:gz") as tf:
            for name, data in (("Bag/a.png", photos[0]), ("Bag/b.png", photos[1]), ("Bag/bomb.png", bytes(16 * MB))):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    assert archive.stat().st_size < MB

    result = run_ingest(IngestParams(source=str(archive), out=str(tmp_path / "data"), max_file_mb=1.0))
    assert result.files == 2 and result.bytes < MB
    refused = {r["path"]: r["reason"] for r in result.refused}
    assert set(refused) == {"Bag/bomb.png"}
    assert "16.0 MB once extracted, over ingest.max_file_mb = 1" in refused["Bag/bomb.png"]
    assert sum(p.stat().st_size for p in (tmp_path / "data").rglob("*") if p.is_file()) < MB


def test_source_over_the_total_limit_is_refused_before_any_write(tmp_path, photos):
    archive = tmp_path / "shop.zip"
    _zip_bomb(archive, photos, 3)
    before = _siblings(tmp_path / "data")
    with pytest.raises(IngestError, match=r"over ingest.max_total_mb = 2 \(params.yaml\); nothing was written"):
        run_ingest(IngestParams(source=str(archive), out=str(tmp_path / "data"), max_file_mb=4.0, max_total_mb=2.0))
    assert _siblings(tmp_path / "data") == before  # no --out, no staging folder left


def test_source_larger_than_the_free_disk_is_refused(tmp_path, photos, monkeypatch):
    import shutil

    archive = tmp_path / "shop.zip"
    _zip_bomb(archive, photos, 3)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 * MB, 9 * MB, 1 * MB))
    with pytest.raises(IngestError, match="MB are free beside"):
        run_ingest(IngestParams(source=str(archive), out=str(tmp_path / "data")))
    assert not (tmp_path / "data").exists()


def test_member_yielding_more_than_its_declared_size_stops_the_copy(tmp_path, photos):
    """A tar member whose header understates its size cannot be caught from the listing; the copy stops at the
    declared size (a folder file that grows while read is the same case)."""
    from productgan.data.ingest import _copy_file
    from productgan.data.sources.base import PlannedFile
    from productgan.data.sources.folder import FolderSource

    src = tmp_path / "shop" / "Bag"
    src.mkdir(parents=True)
    (src / "a.png").write_bytes(photos[0])
    with FolderSource(str(tmp_path / "shop")) as source:
        planned = source.plan().files[0]
        lying = PlannedFile(planned.dest, planned.kind, planned.split, planned.category, 10, planned.ref,
                            planned.order)
        dest = tmp_path / "out"
        (dest / "Bag").mkdir(parents=True)

        class Bar:
            def update(self, n: int) -> None:
                pass

        with pytest.raises(IngestError, match="more bytes than its listed size"):
            _copy_file(source, lying, dest.resolve(), Bar(), 256 * MB)


# --- 16-bit RGB(A) PNGs ------------------------------------------------------------------------------------


def _png16(pixels: np.ndarray) -> bytes:
    """A 16-bit-per-channel PNG (grey+alpha, RGB or RGBA), written by hand: Pillow cannot write these."""
    h, w, c = pixels.shape
    color_type = {2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _to8(v: np.ndarray) -> np.ndarray:
    return np.rint(v.astype(np.float64) * 255 / 65535)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_png_keeps_its_colours(channels):
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 65536, (12, 9, channels), dtype=np.uint16)
    if channels in (2, 4):
        pixels[..., -1] = 65535  # opaque, so the colours are compared directly...
        pixels[0, 0, -1] = 0  # ...but one fully transparent pixel, which must come out white
    img = decode_image(_png16(pixels))
    assert not hasattr(img, "reason"), img
    colour = pixels[..., :-1] if channels in (2, 4) else pixels
    expected = _to8(colour).reshape(12, 9, -1)
    if channels == 2:  # Pillow opens 16-bit grey+alpha as RGBA with the grey in each channel
        rgb = np.asarray(img.convert("RGB"))
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        img = img.convert("L")
    else:
        assert img.mode == "RGB"
    got = np.asarray(img, dtype=np.float64).reshape(12, 9, -1)
    opaque = np.ones((12, 9), bool)
    if channels in (2, 4):
        opaque[0, 0] = False
        assert (got[0, 0] == 255).all()
    assert np.abs(got[opaque] - expected[opaque]).max() <= 1  # 16 -> 8 bits: at most one step off


def test_16_bit_pngs_go_through_ingest_and_preprocess(tmp_path):
    shop = tmp_path / "shop"
    rng = np.random.default_rng(0)
    for category in ("Bag", "Coat"):
        (shop / category).mkdir(parents=True)
        for i in range(3):
            channels = (3, 4)[i % 2]
            px = rng.integers(0, 65536, (30, 20, channels), dtype=np.uint16)
            if channels == 4:
                px[..., 3] = 65535
            (shop / category / f"p{i}.png").write_bytes(_png16(px))
    run_ingest(IngestParams(source=str(shop), out=str(tmp_path / "data")))
    manifest = run_preprocess(tmp_path / "data", tmp_path / "prepared", PreprocessParams(channels=3, test_fraction=0.0,
                                                                                           val_fraction=0.0))
    assert manifest["inputs"]["refused"] == 0 and manifest["inputs"]["used"] == 6


# --- data/ changed after ingest ----------------------------------------------------------------------------


@pytest.fixture()
def ingested(tmp_path, photos) -> Path:
    shop = tmp_path / "shop"
    for category, names in (("Bag", ["a", "b", "c"]), ("Coat", ["d", "e", "f"])):
        (shop / category).mkdir(parents=True)
        for i, name in enumerate(names):
            (shop / category / f"{name}.png").write_bytes(photos[i + (3 if category == "Coat" else 0)])
    run_ingest(IngestParams(source=str(shop), out=str(tmp_path / "data")))
    return tmp_path / "data"


def _refused(data: Path, out: Path) -> dict[str, str]:
    manifest = run_preprocess(data, out, PreprocessParams(max_refused_fraction=0.9))
    return {r["path"]: r["reason"] for r in manifest["refused"]}


def test_symlink_planted_after_ingest_is_refused(ingested, tmp_path):
    a, b = ingested / "shop" / "Bag" / "a.png", ingested / "shop" / "Bag" / "b.png"
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(a.read_bytes())  # same bytes, so the manifest's sha256 still matches
    a.unlink()
    a.symlink_to(outside)
    b_bytes = b.read_bytes()
    b.unlink()
    b.symlink_to(ingested / "shop" / "Coat" / "d.png")  # a link inside data/
    copy = tmp_path / "Coat-copy"
    (ingested / "shop" / "Coat").rename(copy)
    (ingested / "shop" / "Coat").symlink_to(copy, target_is_directory=True)  # a linked folder

    refused = _refused(ingested, tmp_path / "prepared")
    assert set(refused) == {"shop/Bag/a.png", "shop/Bag/b.png", "shop/Coat/d.png", "shop/Coat/e.png",
                            "shop/Coat/f.png"}
    assert all("symlink" in r and "ingest writes none" in r for r in refused.values()), refused
    assert b_bytes  # (the original b is gone; the link must not stand in for it)


def test_fifo_planted_after_ingest_is_refused_without_hanging(ingested, tmp_path):
    """A FIFO in place of a photo would block a plain read forever; preprocess runs in a subprocess here so a
    hang fails the test instead of stalling the suite."""
    target = ingested / "shop" / "Bag" / "a.png"
    target.unlink()
    os.mkfifo(target)
    code = ("import json, sys; from productgan.data.preprocess import run_preprocess, PreprocessParams; "
            "m = run_preprocess(sys.argv[1], sys.argv[2], PreprocessParams(max_refused_fraction=0.9)); "
            "print(json.dumps({r['path']: r['reason'] for r in m['refused']}))")
    res = subprocess.run([sys.executable, "-c", code, str(ingested), str(tmp_path / "prepared")],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "not a regular file" in res.stdout and "shop/Bag/a.png" in res.stdout


def test_file_swapped_for_a_larger_one_is_refused_unread(ingested, tmp_path):
    target = ingested / "shop" / "Bag" / "a.png"
    with open(target, "r+b") as fh:
        fh.truncate(64 * MB)  # sparse: costs no disk, but a plain read_bytes would load it all
    refused = _refused(ingested, tmp_path / "prepared")
    assert "size" in refused["shop/Bag/a.png"] and "manifest" in refused["shop/Bag/a.png"]
