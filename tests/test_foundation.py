"""The package skeleton: fast CLI, params typed and in step with params.yaml, atomic IO, lineage."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from productgan.io import atomic_write_json, read_json, sha256_file
from productgan.lineage import dataset_version, params_hash
from productgan.params import ParamsError, from_dict, load_section

REPO = Path(__file__).resolve().parents[1]


def test_help_is_fast_and_imports_nothing_heavy(cli_env):
    heavy = "('torch', 'mlflow', 'kfp', 'dvc')"
    code = f"import sys; from productgan.cli import cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env, check=True)
    assert out.stdout.strip() == "[]"
    res = subprocess.run([sys.executable, "-m", "productgan", "--help"], capture_output=True, text=True, env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "ingest" in res.stdout and "preprocess" in res.stdout


@dataclasses.dataclass
class _Demo:
    a: int = 1
    b: float = 0.5
    c: str | None = None


def test_params_typed_and_strict(tmp_path):
    assert from_dict(_Demo, {"a": 3, "b": 1}) == _Demo(3, 1.0, None)
    with pytest.raises(ParamsError, match="unknown key"):
        from_dict(_Demo, {"zz": 1})
    with pytest.raises(ParamsError, match="expected int"):
        from_dict(_Demo, {"a": "x"})
    p = tmp_path / "params.yaml"
    p.write_text("demo:\n  a: 5\n")
    assert load_section("demo", _Demo, p, overrides={"b": 2.0, "c": None}) == _Demo(5, 2.0, None)


def test_atomic_json_and_hash(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "x.json") == {"a": [1, 2], "b": 1}
    assert len(sha256_file(tmp_path / "x.json")) == 64
    assert not list(tmp_path.glob(".*.tmp"))
    assert params_hash({"a": 1, "b": 2}) == params_hash({"b": 2, "a": 1})


def test_dataset_version_reads_data_dvc(tmp_path):
    (tmp_path / "data.dvc").write_text("outs:\n- md5: abc123.dir\n  path: data\n")
    assert dataset_version(tmp_path / "data.dvc") == "abc123.dir"
    assert dataset_version(tmp_path / "missing.dvc") is None
