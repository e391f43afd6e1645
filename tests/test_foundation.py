"""The package skeleton: fast CLI, params typed and in step with params.yaml, atomic IO, lineage."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from productgan.io import atomic_write_json, read_json, sha256_file
from productgan.lineage import dataset_version, stable_hash
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
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})


def test_dataset_version_reads_data_dvc(tmp_path):
    (tmp_path / "data.dvc").write_text("outs:\n- md5: abc123.dir\n  path: data\n")
    assert dataset_version(tmp_path / "data.dvc") == "abc123.dir"
    assert dataset_version(tmp_path / "missing.dvc") is None


def test_code_version_ignores_comments_and_docstrings_but_not_code(tmp_path):
    from productgan.lineage import code_version

    module = tmp_path / "m.py"
    module.write_text('"""Doc."""\n\ndef f(x):\n    """Twice."""\n    return 2 * x\n')
    before = code_version([module])
    module.write_text('"""Other doc."""\n# a new comment\n\ndef f(x):  # why\n    """Doubled."""\n\n    return 2 * x\n')
    assert code_version([module]) == before
    module.write_text('"""Doc."""\n\ndef f(x):\n    """Twice."""\n    return 3 * x\n')
    assert code_version([module]) != before


def test_core_library_imports_no_orchestrator(cli_env):
    """productgan/ never imports kfp, components or pipelines: no import of them anywhere in its source (also
    inside functions), and every core module imports in a process where they cannot be imported."""
    import ast

    orchestrators = ("kfp", "components", "pipelines")
    for path in sorted((REPO / "productgan").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            bad = [n for n in names if n.split(".")[0] in orchestrators]
            assert not bad, f"{path.relative_to(REPO)}:{node.lineno} imports {bad[0]}"
    code = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("kfp", "components", "pipelines"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import productgan
skip = {"productgan.__main__", "productgan.registry.model_code"}  # a CLI run and MLflow's model-from-code entry
names = [m.name for m in pkgutil.walk_packages(productgan.__path__, "productgan.") if m.name not in skip]
for name in names:
    importlib.import_module(name)
print(len(names))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout) > 40


def test_orchestrator_commands_come_from_their_entry_points(cli_env):
    """`pipeline` and `submit` live in pipelines/cli.py and reach `productgan` through the entry-point group
    productgan.commands (installed with the package): listed by --help, loaded only when used."""
    from productgan.cli import COMMANDS, plugin_commands

    assert {"pipeline", "submit"} <= set(plugin_commands()) and not {"pipeline", "submit"} & set(COMMANDS)
    assert plugin_commands()["submit"].value == "pipelines.cli:submit"
    res = subprocess.run([sys.executable, "-m", "productgan", "--help"], capture_output=True, text=True, env=cli_env)
    assert res.returncode == 0 and "pipeline" in res.stdout and "submit" in res.stdout
