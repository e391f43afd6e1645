"""The preprocess step end to end on ingest-shaped data/ folders: real Fashion-MNIST IDX and mixed photo folders."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import FMNIST_CATEGORIES, REPO
from dataset_builder import FMNIST_SOURCE, Entry, encode, fmnist_entries, product_photo, write_dataset
from PIL import Image

from productgan.data.arrays import SPLITS, load_manifest, load_split
from productgan.data.idx import IdxError, idx_bytes, read_idx, read_idx_bytes, write_idx
from productgan.data.preprocess import PreprocessError, PreprocessParams, run_preprocess
from productgan.data.split import assign_split
from productgan.io import sha256_file
from productgan.params import ParamsError, load_section


def _fm_subset(fmnist_small, n_train: int = 300, n_test: int = 100) -> dict:
    (x, y), (xt, yt) = fmnist_small["train"], fmnist_small["test"]
    return {"train": (x[:n_train], y[:n_train]), "test": (xt[:n_test], yt[:n_test])}


def _photos(n: int, seed: int = 0, categories=FMNIST_CATEGORIES, source: str = "shop") -> list[Entry]:
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        category = categories[i % len(categories)]
        size = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
        fmt, ext = [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")][i % 3]
        content = encode(product_photo(rng, size), fmt)
        entries.append(Entry(f"{source}/{category.replace('/', '_')}/p{i:03d}.{ext}", content, category=category,
                             source=source))
    return entries


def _all_arrays(out: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for split in SPLITS:
        x, y = load_split(out, split, mmap=False)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    return arrays


def _tree(root: Path, skip: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` except under ``skip``: {relative path: (size, sha256)}."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, sha256_file(p))
        for p in sorted(root.rglob("*"))
        if p.is_file() and skip not in p.parents
    }


# --- the IDX reader ---------------------------------------------------------------------------------------------

def test_idx_reader_gzip_plain_and_broken(tmp_path, fmnist_dir):
    real = read_idx(fmnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert real.shape == (10_000,) and real.dtype == np.uint8 and set(np.unique(real)) == set(range(10))
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a.idx", a, compress=False)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a) and np.array_equal(read_idx(tmp_path / "a.idx"), a)
    assert read_idx_bytes(idx_bytes(np.array([1.5, -2.0], dtype=np.float32))).tolist() == [1.5, -2.0]
    with pytest.raises(IdxError, match="truncated"):
        read_idx_bytes(idx_bytes(a, compress=False)[:-3], "cut.idx")
    with pytest.raises(IdxError, match="not an IDX"):
        read_idx_bytes(b"\x89PNG....", "x.png")
    with pytest.raises(IdxError, match="gzip"):
        read_idx_bytes(idx_bytes(a)[:20], "cut.gz")


# --- params -----------------------------------------------------------------------------------------------------

def test_bad_settings_are_refused_with_the_key():
    with pytest.raises(ParamsError, match="resolution"):
        load_section("preprocess", PreprocessParams, REPO / "params.yaml", overrides={"resolution": 48})
    with pytest.raises(ParamsError, match="background"):
        PreprocessParams(background="pink")


# --- Fashion-MNIST ----------------------------------------------------------------------------------------------

def test_fashion_mnist_keeps_official_test_split(tmp_path, fmnist_small):
    subset = _fm_subset(fmnist_small)
    data = write_dataset(tmp_path / "data", fmnist_entries(subset), FMNIST_CATEGORIES,
                         {FMNIST_SOURCE: FMNIST_CATEGORIES})
    manifest = run_preprocess(data, tmp_path / "prepared", PreprocessParams(), progress=False)
    out = tmp_path / "prepared"

    xt, yt = load_split(out, "test")
    assert np.array_equal(xt, subset["test"][0]) and np.array_equal(yt, subset["test"][1])  # as they are, in order
    (x, y), (xv, yv) = load_split(out, "train"), load_split(out, "val")
    assert x.dtype == np.uint8 and y.dtype == np.int64 and x.shape[1:] == (1, 28, 28)
    assert len(x) + len(xv) == 300 and 10 <= len(xv) <= 60  # val_fraction 0.1 of train, by hash
    # train and val are the official train images (order kept), nothing lost or invented
    train_rows = {r.tobytes(): int(lab) for r, lab in zip(subset["train"][0], subset["train"][1], strict=True)}
    for xs, ys in ((x, y), (xv, yv)):
        assert all(train_rows[r.tobytes()] == int(lab) for r, lab in zip(xs, ys, strict=True))

    assert manifest == load_manifest(out)
    assert manifest["categories"] == FMNIST_CATEGORIES and manifest["resolution"] == 28 and manifest["channels"] == 1
    assert manifest["counts"]["test"]["total"] == 100
    assert sum(manifest["counts"]["test"]["per_category"].values()) == 100
    assert manifest["counts"]["val"]["per_category"] == {
        c: int((yv == i).sum()) for i, c in enumerate(FMNIST_CATEGORIES)
    }
    assert manifest["refused"] == [] and manifest["duplicates"] == []
    assert manifest["dataset_hash"] == manifest["source_manifest_sha256"] == sha256_file(data / "manifest.json")
    # every setting the output depends on; `workers` is not one (the output is the same with any number)
    assert manifest["params"] == {k: v for k, v in dataclasses.asdict(PreprocessParams()).items() if k != "workers"}
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)  # readable by others (mkdtemp is private)

    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123abcd.dir\n  path: data\n")
    again = run_preprocess(data, out, PreprocessParams(), progress=False)
    assert again["dataset_hash"] == "0123abcd.dir"


def test_idx_resized_to_other_resolution_and_rgb(tmp_path, fmnist_small):
    subset = _fm_subset(fmnist_small, 40, 20)
    data = write_dataset(tmp_path / "data", fmnist_entries(subset), FMNIST_CATEGORIES)
    run_preprocess(data, tmp_path / "p32", PreprocessParams(resolution=32, channels=3), progress=False)
    xt, _ = load_split(tmp_path / "p32", "test")
    assert xt.shape == (20, 3, 32, 32)
    assert np.array_equal(xt[:, 0], xt[:, 1]) and np.array_equal(xt[:, 0], xt[:, 2])
    direct = np.asarray(Image.fromarray(subset["test"][0][5, 0]).resize((32, 32), Image.Resampling.LANCZOS))
    assert np.array_equal(xt[5, 0], direct)


def test_idx_labels_map_through_source_categories(tmp_path):
    global_categories = ["Bag", "Coat", "Shirt"]
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1] * 15, dtype=np.uint8)  # 0 = Shirt, 1 = Bag in this source
    entries = [
        Entry("shirts/train-images-idx3-ubyte.gz", idx_bytes(images), "idx-images", "shirts", "train"),
        Entry("shirts/train-labels-idx1-ubyte.gz", idx_bytes(labels), "idx-labels", "shirts", "train"),
    ]
    data = write_dataset(tmp_path / "data", entries, global_categories, {"shirts": ["Shirt", "Bag"]})
    manifest = run_preprocess(data, tmp_path / "out", PreprocessParams(), progress=False)
    assert manifest["counts"]["train"]["per_category"]["Coat"] == 0
    lookup = {img.tobytes(): int(lab) for img, lab in zip(images, labels, strict=True)}
    for split in SPLITS:
        x, y = load_split(tmp_path / "out", split)
        assert all({0: 2, 1: 0}[lookup[r[0].tobytes()]] == int(lab) for r, lab in zip(x, y, strict=True))


# --- photos: padding, dedup, refusals ---------------------------------------------------------------------------

def _framed(w: int, h: int, frame: int = 8) -> Image.Image:
    """A red product inside a grey (128) frame, ``w``×``h``."""
    rgb = np.full((h, w, 3), 128, dtype=np.uint8)
    rgb[frame:-frame, frame:-frame] = (255, 0, 0)
    return Image.fromarray(rgb)


@pytest.mark.parametrize(("background", "expected"), [("auto", 128), ("white", 255), ("black", 0)])
def test_aspect_ratio_kept_and_padded_with_background(tmp_path, background, expected):
    entries = [
        Entry("shop/Bag/wide.png", encode(_framed(112, 56), "PNG"), category="Bag"),
        Entry("shop/Dress/tall.png", encode(_framed(56, 112), "PNG"), category="Dress"),
    ]
    data = write_dataset(tmp_path / "data", entries, ["Bag", "Dress"])
    params = PreprocessParams(channels=3, background=background, val_fraction=0.0, test_fraction=0.0)
    run_preprocess(data, tmp_path / "out", params, progress=False)
    x, y = load_split(tmp_path / "out", "train")
    wide, tall = x[list(y).index(0)].transpose(1, 2, 0), x[list(y).index(1)].transpose(1, 2, 0)
    # 112×56 -> 28×14: rows 0-6 and 21-27 are padding; the picture keeps its 2:1 shape
    assert (wide[:7] == expected).all() and (wide[21:] == expected).all()
    assert (tall[:, :7] == expected).all() and (tall[:, 21:] == expected).all()
    assert (wide[7:21] == 128).all(axis=2).any() and (wide[14, 14] == (255, 0, 0)).all()
    assert (tall[14, 14] == (255, 0, 0)).all()


def test_exact_duplicates_dropped_with_kept_twin(tmp_path, fmnist_small):
    subset = _fm_subset(fmnist_small, 50, 30)
    rng = np.random.default_rng(5)
    base = product_photo(rng, (40, 30))
    test_twin = Image.fromarray(subset["test"][0][3, 0], "L")  # a photo equal to an official test image
    train_twin = Image.fromarray(subset["train"][0][7, 0], "L")
    entries = fmnist_entries(subset) + [
        Entry("a-shop/Bag/one.png", encode(base, "PNG"), category="Bag", source="a-shop"),
        Entry("a-shop/Bag/one-again.webp", encode(base, "WEBP", lossless=True), category="Bag", source="a-shop"),
        Entry("a-shop/Coat/misfiled.bmp", encode(base, "BMP"), category="Coat", source="a-shop"),
        Entry("a-shop/Bag/test-twin.png", encode(test_twin, "PNG"), category="Bag", source="a-shop"),
        Entry("a-shop/Bag/train-twin.png", encode(train_twin, "PNG"), category="Bag", source="a-shop"),
    ]
    data = write_dataset(tmp_path / "data", entries, FMNIST_CATEGORIES)
    manifest = run_preprocess(data, tmp_path / "out", PreprocessParams(), progress=False)
    dups = {d["path"]: d for d in manifest["duplicates"]}
    assert dups["a-shop/Bag/one.png"]["kept"] == "a-shop/Bag/one-again.webp"  # path order
    assert dups["a-shop/Coat/misfiled.bmp"] == {
        "path": "a-shop/Coat/misfiled.bmp", "category": "Coat", "kept": "a-shop/Bag/one-again.webp",
        "kept_category": "Bag",
    }
    # an official test image always wins: no test image leaks into training through a copy
    assert dups["a-shop/Bag/test-twin.png"]["kept"] == f"{FMNIST_SOURCE}/t10k-images-idx3-ubyte.gz#3"
    assert dups[f"{FMNIST_SOURCE}/train-images-idx3-ubyte.gz#7"]["kept"] == "a-shop/Bag/train-twin.png"
    assert len(dups) == 4 and manifest["inputs"]["duplicates"] == 4
    total = sum(manifest["counts"][s]["total"] for s in SPLITS)
    assert total == 80 + 5 - 4 and manifest["counts"]["test"]["total"] >= 30
    seen = [r.tobytes() for s in SPLITS for r in load_split(tmp_path / "out", s)[0]]
    assert len(seen) == len(set(seen))

    kept_all = run_preprocess(data, tmp_path / "out2", PreprocessParams(dedup=False), progress=False)
    assert kept_all["duplicates"] == [] and sum(kept_all["counts"][s]["total"] for s in SPLITS) == 85


def _broken_files() -> list[Entry]:
    jpeg = encode(Image.fromarray(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    return [
        Entry("shop/Bag/empty.jpg", b"", category="Bag"),
        Entry("shop/Bag/cut.jpg", jpeg[: len(jpeg) // 2], category="Bag"),
        Entry("shop/Coat/readme.jpg", b"not a photo\n", category="Coat"),
    ]


def test_refused_share_over_threshold_fails_with_reasons(tmp_path):
    data = write_dataset(tmp_path / "data", _photos(8) + _broken_files(), FMNIST_CATEGORIES)
    out = tmp_path / "out"
    with pytest.raises(PreprocessError) as info:
        run_preprocess(data, out, PreprocessParams(), progress=False)
    message = str(info.value)
    for needle in ("refused 3 of 11", "max_refused_fraction=0.2", "params.yaml", "refused.json",
                   str(data / "manifest.json"), "shop/Bag/cut.jpg: truncated"):
        assert needle in message, (needle, message)
    report = json.loads((out / "refused.json").read_text())
    assert {r["path"] for r in report["refused"]} == {e.path for e in _broken_files()}
    assert not list(out.glob("*.npy"))  # no half-made dataset for the next step

    ok = run_preprocess(data, out, PreprocessParams(max_refused_fraction=0.3), progress=False)
    assert ok["inputs"] == {"files": 11, "images": 11, "used": 8, "refused": 3, "duplicates": 0}
    assert not (out / "refused.json").exists()  # the failure report went with the old folder


def test_out_must_be_a_preprocess_folder(tmp_path):
    data = write_dataset(tmp_path / "data", _photos(3), FMNIST_CATEGORIES)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(PreprocessError, match="did not write"):
        run_preprocess(data, tmp_path / "home", progress=False)
    with pytest.raises(PreprocessError, match="overlaps"):
        run_preprocess(data, data / "prepared", progress=False)
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_input_integrity_refusals(tmp_path, fmnist_small):
    subset = _fm_subset(fmnist_small, 60, 20)
    entries = fmnist_entries(subset) + _photos(30, seed=2)
    data = write_dataset(tmp_path / "data", entries, FMNIST_CATEGORIES)
    (data / _photos(30, seed=2)[0].path).write_bytes(b"edited after ingest")
    (data / _photos(30, seed=2)[1].path).unlink()
    test_images = data / f"{FMNIST_SOURCE}/t10k-images-idx3-ubyte.gz"
    doc = json.loads((data / "manifest.json").read_text())
    cut = idx_bytes(subset["test"][0][:, 0])[:200]  # a truncated gzip whose header still says 20 images
    test_images.write_bytes(cut)
    for f in doc["files"]:
        if f["path"].endswith("t10k-images-idx3-ubyte.gz"):
            f["sha256"], f["size"] = sha256_file(test_images), len(cut)
    (data / "manifest.json").write_text(json.dumps(doc))

    manifest = run_preprocess(data, tmp_path / "out", PreprocessParams(max_refused_fraction=0.5), progress=False)
    reasons = {r["path"]: r["reason"] for r in manifest["refused"]}
    assert "changed after ingest" in reasons[_photos(30, seed=2)[0].path]
    assert "missing on disk" in reasons[_photos(30, seed=2)[1].path]
    assert "gzip" in reasons[f"{FMNIST_SOURCE}/t10k-images-idx3-ubyte.gz"]
    assert manifest["inputs"]["refused"] == 2 + 20  # the IDX file counts as the 20 images it declares
    assert manifest["counts"]["test"]["total"] < 20  # the 20 IDX test images are gone, only photos remain


def test_split_fractions_follow_params():
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(20_000)]
    unsplit = Counter(assign_split(d, None, 0.1, 0.2) for d in digests)
    assert abs(unsplit["test"] / 20_000 - 0.2) < 0.02 and abs(unsplit["val"] / 20_000 - 0.08) < 0.02
    official = Counter(assign_split(d, "train", 0.1, 0.2) for d in digests)
    assert official["test"] == 0 and abs(official["val"] / 20_000 - 0.1) < 0.02
    assert {assign_split(d, "test", 0.1, 0.2) for d in digests} == {"test"}


# --- determinism ------------------------------------------------------------------------------------------------

def test_split_is_deterministic_and_independent_of_order_and_names(tmp_path, fmnist_small):
    entries = fmnist_entries(_fm_subset(fmnist_small, 200, 50)) + _photos(60, seed=9)
    params = PreprocessParams(test_fraction=0.2, val_fraction=0.2)
    data = write_dataset(tmp_path / "data", entries, FMNIST_CATEGORIES)
    first = run_preprocess(data, tmp_path / "a", params, progress=False)
    second = run_preprocess(data, tmp_path / "b", params, progress=False)
    a, b = _all_arrays(tmp_path / "a"), _all_arrays(tmp_path / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a) and first == second
    for name in ("manifest.json", *(f"{s}_{k}.npy" for s in SPLITS for k in ("images", "labels"))):
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "b" / name)  # DVC sees no change
    assert first["counts"]["val"]["total"] > 0 and first["counts"]["test"]["total"] > 50  # photos reached test too

    shuffled = tmp_path / "shuffled"
    shutil.copytree(data, shuffled)
    doc = json.loads((shuffled / "manifest.json").read_text())
    random.Random(1).shuffle(doc["files"])
    (shuffled / "manifest.json").write_text(json.dumps(doc))
    run_preprocess(shuffled, tmp_path / "c", params, progress=False)
    c = _all_arrays(tmp_path / "c")
    assert all(np.array_equal(a[k], c[k]) for k in a)

    renamed = [dataclasses.replace(e, path=e.path.replace("/p", "/renamed-z")) if e.kind == "image" else e
               for e in entries]
    run_preprocess(write_dataset(tmp_path / "renamed", renamed, FMNIST_CATEGORIES), tmp_path / "d", params,
                   progress=False)
    d = _all_arrays(tmp_path / "d")
    for split in SPLITS:
        members = {(r.tobytes(), int(lab)) for r, lab in zip(a[f"{split}_images"], a[f"{split}_labels"], strict=True)}
        assert members == {(r.tobytes(), int(lab)) for r, lab in zip(d[f"{split}_images"], d[f"{split}_labels"],
                                                                      strict=True)}


# --- a real-world mixed folder through the CLI -------------------------------------------------------------------

def _mixed_folder() -> tuple[list[Entry], set[str]]:
    """Photos of many sizes, formats and modes as shops hand them over, plus the broken ones; (entries, refused)."""
    rng = np.random.default_rng(11)
    cats = FMNIST_CATEGORIES
    entries: list[Entry] = []

    def add(name: str, content: bytes, i: int) -> None:
        entries.append(Entry(f"shop/{cats[i % 10].replace('/', '_')}/{name}", content, category=cats[i % 10]))

    photo = lambda w, h: product_photo(rng, (w, h))  # noqa: E731
    add("tiny.png", encode(photo(3, 5), "PNG"), 0)
    add("vga.jpg", encode(photo(640, 480), "JPEG", quality=90), 1)
    add("banner.webp", encode(photo(1000, 150), "WEBP", quality=80), 2)
    add("pole.png", encode(photo(17, 300), "PNG"), 3)
    add("grey.jpg", encode(photo(90, 120).convert("L"), "JPEG"), 4)
    add("cmyk.jpg", encode(photo(64, 64).convert("CMYK"), "JPEG"), 5)
    add("alpha.png", encode(photo(50, 70).convert("RGBA"), "PNG"), 6)
    add("la.png", encode(photo(33, 33).convert("LA"), "PNG"), 7)
    add("palette.png", encode(photo(40, 40).convert("P"), "PNG", transparency=0), 8)
    add("bits.png", encode(photo(60, 30).convert("1"), "PNG"), 9)
    add("deep.png", encode(Image.fromarray(rng.integers(0, 65535, (40, 30), dtype=np.uint16)), "PNG"), 0)
    add("float.tif", encode(Image.fromarray(rng.random((20, 20), dtype=np.float32), "F"), "TIFF"), 1)
    add("scan.tiff", encode(photo(80, 60), "TIFF", compression="tiff_lzw"), 2)
    add("old.bmp", encode(photo(31, 47), "BMP"), 3)
    frames = [photo(30, 30) for _ in range(3)]
    add("spin.gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), 4)
    exif = Image.Exif()
    exif[0x0112] = 8
    add("phone.jpg", encode(photo(120, 90), "JPEG", exif=exif.tobytes()), 5)
    add("liar.png", encode(photo(45, 45), "JPEG"), 6)  # a JPEG named .png
    add("liar.jpg", encode(photo(45, 25), "PNG"), 7)  # a PNG named .jpg
    for i in range(12):
        add(f"plain{i}.jpg", encode(photo(int(rng.integers(24, 200)), int(rng.integers(24, 200))), "JPEG"), i)
    entries.append(Entry("shop/Bag/copy-of-tiny.png", entries[0].content, category="Bag"))  # an exact duplicate
    broken = _broken_files() + [
        Entry("shop/Bag/bomb.png", encode(Image.new("L", (1200, 1000)), "PNG"), category="Bag"),
        Entry("shop/Bag/cut.png", encode(photo(300, 300), "PNG", compress_level=0)[:5000], category="Bag"),
    ]
    return entries + broken, {e.path for e in broken}


def test_mixed_real_world_folder_through_cli(tmp_path, cli_env):
    entries, expected_refused = _mixed_folder()
    data = write_dataset(tmp_path / "data", entries, FMNIST_CATEGORIES)
    params_file = tmp_path / "params.yaml"
    params_file.write_text("preprocess:\n  resolution: 32\n  channels: 3\n  max_image_pixels: 500000\n")
    before = _tree(tmp_path, tmp_path / "prepared")
    res = subprocess.run(
        [sys.executable, "-m", "productgan", "--params", str(params_file), "preprocess",
         "--input", str(data), "--out", str(tmp_path / "prepared")],
        capture_output=True, text=True, env=cli_env, cwd=tmp_path, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "refused 5" in res.stdout and "shop/Bag/bomb.png" in res.stderr

    manifest = load_manifest(tmp_path / "prepared")
    refused = {r["path"]: r["reason"] for r in manifest["refused"]}
    assert set(refused) == expected_refused and all(refused.values())
    assert "decompression bomb" in refused["shop/Bag/bomb.png"]
    assert [d["path"] for d in manifest["duplicates"]] == ["shop/T-shirt_top/tiny.png"]
    used = sum(manifest["counts"][s]["total"] for s in SPLITS)
    assert used + len(refused) + len(manifest["duplicates"]) == len(entries)  # every file accounted for
    assert manifest["inputs"]["used"] == used == len(entries) - 6
    for split in SPLITS:
        x, y = load_split(tmp_path / "prepared", split)
        assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32) and len(x) == len(y)
        assert len(y) == 0 or (0 <= y.min() and y.max() < 10)

    # nothing written outside --out, nothing left behind beside it, the input untouched
    assert _tree(tmp_path, tmp_path / "prepared") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "params.yaml", "prepared"]
    assert sorted(os.listdir(tmp_path / "prepared")) == sorted(
        ["manifest.json"] + [f"{s}_{k}.npy" for s in SPLITS for k in ("images", "labels")]
    )
