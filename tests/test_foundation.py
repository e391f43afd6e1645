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


def _package(root: Path, modules: dict[str, str]) -> None:
    for name, text in modules.items():
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_model_code_is_what_training_imports_at_any_depth(tmp_path):
    """One definition of the model code's version: the modules the root imports (also inside functions, also
    relatively), transitively; an import added anywhere on the way enters it; a package __init__'s functions
    (never called by training) and comments do not."""
    from productgan.lineage import code_version, imported_modules

    _package(tmp_path, {
        "pkg.__init__": "def load():\n    from pkg import serving\n",
        "pkg.train": "import os\nfrom pkg.gan import loop\n",
        "pkg.gan.__init__": "",
        "pkg.gan.loop": "def run():\n    from ..device import pick\n    return pick()\n",
        "pkg.device": "def pick():\n    return 'cpu'\n",
        "pkg.serving": "import pkg.web\n",
        "pkg.web": "",
    })
    found = imported_modules("pkg.train", tmp_path)
    assert list(found) == ["pkg", "pkg.device", "pkg.gan", "pkg.gan.loop", "pkg.train"]
    version = code_version(found.values(), tmp_path)
    device = tmp_path / "pkg" / "device.py"
    device.write_text("# why cpu\n" + device.read_text())
    assert code_version(imported_modules("pkg.train", tmp_path).values(), tmp_path) == version
    device.write_text(device.read_text().replace("'cpu'", "'cuda'"))
    assert code_version(imported_modules("pkg.train", tmp_path).values(), tmp_path) != version
    # an import added on the way is in the model code at once: nothing to list by hand
    (tmp_path / "pkg" / "gan" / "loop.py").write_text("import pkg.web\n" + (tmp_path / "pkg/gan/loop.py").read_text())
    assert "pkg.web" in imported_modules("pkg.train", tmp_path)


def test_the_real_model_code_covers_what_the_trainer_imports_and_nothing_it_does_not():
    from productgan.lineage import RECORD_ONLY, model_code_files

    files = model_code_files()
    # the modules the 9-file list missed (a change there now re-runs training and stops a resume)
    assert {"productgan.device", "productgan.cpu_precision", "productgan.data.arrays", "productgan.gan.trainer",
            "productgan.gan.recipes", "productgan.gan.networks", "productgan.gan.loss"} <= set(files)
    # serving (all of productgan/serve/), evaluation and the records of a run are not the model
    assert not [m for m in files if m.startswith("productgan.serve")]
    assert not {"productgan.metrics.evaluate", *RECORD_ONLY} & set(files)
    # DVC's settings stage, which writes the version for the train stage, depends on every one of these files
    import yaml

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["settings"]
    missed = [f for f in files.values() if not any(f.resolve().is_relative_to(REPO / d) for d in stage["deps"])]
    assert not missed, f"dvc.yaml stage settings misses {missed}"
    train = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    assert {"model_code.yaml": ["train"]} in train["params"]


def _productgan_imports(path: Path) -> set[str]:
    """The productgan modules a file imports anywhere in its code (also inside functions)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] == "productgan"}


def test_the_pipeline_does_not_import_the_product():
    """Two halves: productgan/serve/ uses the pipeline's library, never the other way round. The only seams: the
    registry logs the served model (pyfunc), ``productgan.load`` hands over to serve/, and the old path of
    versions registered before serve/ existed. The click commands (productgan/commands/) call both."""
    package = REPO / "productgan"
    seams = {
        (path.relative_to(REPO).as_posix(), module)
        for path in sorted(package.rglob("*.py"))
        if not path.is_relative_to(package / "serve") and not path.is_relative_to(package / "commands")
        for module in _productgan_imports(path) if module.split(".")[:2] == ["productgan", "serve"]
    }
    assert seams == {
        ("productgan/__init__.py", "productgan.serve.api"),
        ("productgan/pyfunc.py", "productgan.serve.pyfunc"),
        ("productgan/registry/log.py", "productgan.serve.pyfunc"),
        ("productgan/registry/model_code.py", "productgan.serve.pyfunc"),
    }


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
