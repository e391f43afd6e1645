"""Preprocessing a catalogue in parallel: a process pool on one machine and shards over pods (decode parts, then
merge) both give the output of one process, byte for byte — duplicates, refusals and the split included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FMNIST_CATEGORIES
from dataset_builder import Entry, encode, fmnist_entries, product_photo, write_dataset
from PIL import Image

import productgan.data.preprocess as prep
from productgan.data.preprocess import PreprocessError, PreprocessParams, run_preprocess
from productgan.data.shards import decode_shard, merge_parts, parse_shard
from productgan.io import sha256_file

PIDS = "PRODUCTGAN_TEST_DECODE_PIDS"
_original_decode_item = prep.decode_item


def _recording_decode_item(inp, item, params):
    """decode_item that notes the process it ran in (pool workers are forked: they see this patch)."""
    with open(os.environ[PIDS], "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    return _original_decode_item(inp, item, params)


def _catalogue(root: Path, fmnist_small) -> Path:
    """Real Fashion-MNIST IDX files plus 40 photos in three formats, two duplicates, a broken file and an
    entry of an unknown kind: every path the output depends on."""
    (x, y), (xt, yt) = fmnist_small["train"], fmnist_small["test"]
    rng = np.random.default_rng(3)
    entries = fmnist_entries({"train": (x[:120], y[:120]), "test": (xt[:40], yt[:40])})
    for i in range(40):
        category = FMNIST_CATEGORIES[i % 10]
        fmt, ext = [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")][i % 3]
        photo = product_photo(rng, (int(rng.integers(30, 120)), int(rng.integers(30, 120))))
        entries.append(Entry(f"shop/{category.replace('/', '_')}/p{i:03d}.{ext}", encode(photo, fmt),
                             category=category))
    twin = product_photo(rng, (50, 40))
    entries += [
        Entry("shop/Bag/twin-a.png", encode(twin, "PNG"), category="Bag"),
        Entry("shop/Bag/twin-b.png", encode(twin, "PNG"), category="Bag"),
        Entry("shop/Coat/test-copy.png", encode(Image.fromarray(xt[5, 0], "L"), "PNG"), category="Coat"),
        Entry("shop/Coat/broken.jpg", b"not a photo\n", category="Coat"),
        Entry("shop/notes.txt", b"hello", kind="text"),
    ]
    return write_dataset(root, entries, FMNIST_CATEGORIES)


def _files(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


def test_pool_and_shards_give_the_one_process_output_byte_for_byte(tmp_path, fmnist_small, monkeypatch):
    data = _catalogue(tmp_path / "data", fmnist_small)
    params = dict(resolution=32, channels=3)
    one = run_preprocess(data, tmp_path / "one", PreprocessParams(**params, workers=1), progress=False)
    assert one["inputs"]["duplicates"] == 2 and one["inputs"]["refused"] == 2  # the fixture covers both

    # two processes decode the photos (the pool really runs: two pids other than this one)
    monkeypatch.setenv(PIDS, str(tmp_path / "pids.txt"))
    monkeypatch.setattr(prep, "decode_item", _recording_decode_item)
    run_preprocess(data, tmp_path / "pool", PreprocessParams(**params, workers=2), progress=False)
    pids = set((tmp_path / "pids.txt").read_text().split())
    assert len(pids - {str(os.getpid())}) == 2, pids
    monkeypatch.undo()
    assert _files(tmp_path / "pool") == _files(tmp_path / "one")

    # three shards (as three pods), each with its own pool, then one merge
    parts = []
    for shard in range(3):
        part = decode_shard(data, tmp_path / f"part{shard}", shard, 3, PreprocessParams(**params, workers=2))
        assert {r["index"] % 3 for r in part["records"]} == {shard}
        parts.append(tmp_path / f"part{shard}")
    merged = merge_parts(list(reversed(parts)), tmp_path / "merged", PreprocessParams(**params))
    assert merged == one
    assert _files(tmp_path / "merged") == _files(tmp_path / "one")


def test_merge_refuses_missing_or_mismatched_parts(tmp_path, fmnist_small):
    data = _catalogue(tmp_path / "data", fmnist_small)
    for shard in range(2):
        decode_shard(data, tmp_path / f"part{shard}", shard, 2, PreprocessParams(workers=1))
    with pytest.raises(PreprocessError, match="shards 0..1 once each"):
        merge_parts([tmp_path / "part0"], tmp_path / "out")
    with pytest.raises(PreprocessError, match="other preprocess settings"):
        merge_parts([tmp_path / "part0", tmp_path / "part1"], tmp_path / "out", PreprocessParams(resolution=64))
    with pytest.raises(PreprocessError, match="I/N"):
        parse_shard("3/3")
    assert parse_shard("2/8") == (2, 8)


def test_shard_and_merge_from_the_command_line(tmp_path, fmnist_small, cli_env):
    data = _catalogue(tmp_path / "data", fmnist_small)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "productgan", "preprocess", *args], cwd=tmp_path,
                              env=cli_env, capture_output=True, text=True, timeout=300)

    for shard in range(2):
        res = cli("--input", str(data), "--out", f"part{shard}", "--shard", f"{shard}/2")
        assert res.returncode == 0, res.stderr
    res = cli("--merge", "part0", "--merge", "part1", "--out", "merged")
    assert res.returncode == 0, res.stderr and "train" in res.stdout
    assert cli("--input", str(data), "--out", "one").returncode == 0
    assert _files(tmp_path / "merged") == _files(tmp_path / "one")
    assert cli("--input", str(data), "--merge", "part0", "--out", "x").returncode != 0
