"""Where an artefact came from: dataset version (data.dvc), git commit, params hash, and the code version
that decides whether a cache or a checkpoint still belongs to the code."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def dataset_version(dvc_file: str | os.PathLike[str] = "data.dvc") -> str | None:
    """The DVC hash of the tracked dataset (``outs[0].md5``, e.g. ``ab12….dir``), or None if untracked."""
    path = Path(dvc_file)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    outs = doc.get("outs") or []
    return outs[0].get("md5") if outs else None


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """HEAD's commit (with ``-dirty`` when the tree has changes), or None outside git (containers)."""
    if os.environ.get("PRODUCTGAN_GIT_COMMIT"):
        return os.environ["PRODUCTGAN_GIT_COMMIT"]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def stable_hash(value: Any) -> str:
    """A short hash of JSON-like data that does not depend on key order."""
    blob = json.dumps(value, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _code_only(source: str, name: str) -> str:
    """The module's syntax tree without docstrings (comments and layout are not in the tree at all)."""
    tree = ast.parse(source, filename=name)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def code_version(paths: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None) -> str:
    """A hash of what the Python files in ``paths`` do (each named by its path under ``root``, else its file
    name): editing a comment or a docstring keeps it, changing a statement, a name or a constant changes it."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        name = path.relative_to(root).as_posix() if root else path.name
        h.update(name.encode() + b"\0" + _code_only(path.read_text(encoding="utf-8"), str(path)).encode())
    return h.hexdigest()[:16]


# The model code: the trainer and every productgan module it imports, at any depth (an import inside a function
# counts: training may call it), less those that only record the run and never touch a weight. Its version is
# what a resume, the retrain check and DVC's train stage compare (one definition). The root is the trainer, not
# its command module, which also holds `sync-run` and `code-version`.
MODEL_CODE_ROOT = "productgan.gan.trainer"
RECORD_ONLY = frozenset({
    "productgan.gan.run", "productgan.tracking", "productgan.registry.store",  # MLflow, run.json, messages
    "productgan.redact", "productgan.io", "productgan.lineage",  # redaction, atomic files, these hashes
})
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding productgan/


def _module_file(name: str, root: Path) -> Path | None:
    base = root.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imports(name: str, path: Path, package: str) -> set[str]:
    """The modules of ``package`` that module ``name`` imports anywhere in its code (a package's __init__ only
    at its top level: what its functions import loads when they are called, which training never does)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in (tree.body if is_package else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from its package upwards
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found |= {base, *(f"{base}.{a.name}" for a in node.names)}  # `from pkg import module` imports a module
    return {m for m in found if m.split(".")[0] == package}


def imported_modules(root_module: str, root: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """``root_module`` and every module of its package it imports, at any depth (with the packages on the
    way, whose __init__ runs on import), as module name -> file under ``root``."""
    base, package = Path(root or _PACKAGE_ROOT), root_module.split(".")[0]
    found: dict[str, Path] = {}
    todo = [root_module]
    while todo:
        name = todo.pop()
        path = None if name in found else _module_file(name, base)
        if path is None:
            continue
        found[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(name, path, package))
    return dict(sorted(found.items()))


def model_code_files(root: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """The model code (see MODEL_CODE_ROOT): module name -> file."""
    return {k: v for k, v in imported_modules(MODEL_CODE_ROOT, root).items() if k not in RECORD_ONLY}


def model_code_version(root: str | os.PathLike[str] | None = None) -> str:
    """The model code's version: the same wherever the same code is installed (a checkout, the image)."""
    base = Path(root or _PACKAGE_ROOT)
    return code_version(model_code_files(base).values(), base)


# What does not change the trained generator, so a new value must not make the retrain check train again:
# whole sections that act before (ingest: the dataset version already identifies the data) or after training
# (evaluate, register, generate, studio, project) or only place the work (pipeline: image, CPU requests, GPUs), and in
# the other sections the keys their dataclass lists as ``NOT_MODEL`` (where and how often to log, save or check).
# Everything else counts, new keys and sections included.
NOT_MODEL_SECTIONS = frozenset({"ingest", "evaluate", "register", "generate", "studio", "project", "pipeline"})


def model_params(params: dict[str, Any]) -> dict[str, Any]:
    """The effective settings of a whole params mapping (defaults, recipe and what it states) that change the
    trained model: a default changed in code counts as much as a value changed in the file."""
    from productgan.params import SECTIONS, resolve, section_class

    out: dict[str, Any] = {}
    for section in sorted(set(params) | set(SECTIONS)):
        if section in NOT_MODEL_SECTIONS:
            continue
        if section not in SECTIONS:  # a section no step knows: stated values count as they are
            out[section] = params[section]
            continue
        cls = section_class(section)
        values = resolve(section, cls, params.get(section)).values()
        out[section] = {k: v for k, v in values.items() if k not in getattr(cls, "NOT_MODEL", ())}
    return out


def model_params_hash(params: dict[str, Any]) -> str:
    """The ``params_hash`` lineage tag: a hash of the effective settings that change the trained model only, so
    the retrain check does not retrain for a new CPU request or log interval."""
    return stable_hash(model_params(params))


@dataclass(frozen=True)
class Lineage:
    """What a step records about its inputs; the command reads it from the working directory (``current``)
    and hands it to the library, which never reads data.dvc or params.yaml for it."""

    dataset_version: str | None = None
    params_hash: str | None = None
    git_commit: str | None = None  # recorded for people; the decisions compare code_version
    code_version: str | None = None  # model_code_version()

    @classmethod
    def current(cls) -> Lineage:
        """data.dvc, the params file in use (``--params`` / $PRODUCTGAN_PARAMS / ./params.yaml), git HEAD and the
        model code's version."""
        from productgan.params import load_params

        return cls(dataset_version(), model_params_hash(load_params()), git_commit(), model_code_version())
