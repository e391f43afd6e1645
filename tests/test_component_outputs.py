"""Every component's outputs in the compiled IR are exactly the outputs its executor writes.

On a real KFP backend the launcher (backend/src/v2/component/launcher_v2.go, ``collectOutputParameters``)
takes each output parameter the IR declares and looks it up by name in the executor's
``executor_output.json``, else reads its output file; a declared name the executor never writes fails the
task after its work is done. The KFP compiler silently renames a returned value whose name clashes with an
``Output[...]`` argument (``decision`` -> ``decision_2``) while the Python executor keeps writing the
function's own name: kfp.local does not notice, a cluster does.

So for every component (each ``*component(image)`` factory in ``components/<step>.py``): compile it alone, run
the real kfp ``Executor``'s output collection on a tiny return value of the declared types, then apply the
launcher's rule to what it wrote.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import typing
from pathlib import Path

import pytest
import yaml
from kfp import compiler
from kfp.dsl import executor as kfp_executor
from kfp.dsl.types import artifact_types

import components

REPO = Path(__file__).resolve().parents[1]
IMAGE = "registry.example/productgan:test"
_SAMPLE = {str: "x", bool: True, int: 1, float: 1.0, dict: {}, list: []}


def _component_factories() -> list[str]:
    """``module.factory`` for every ``component(image)``-like factory (``component``, ``shard_component``, ...)."""
    names = []
    for info in pkgutil.iter_modules(components.__path__):
        module = importlib.import_module(f"components.{info.name}")
        names += [f"{info.name}.{attr}" for attr in dir(module)
                  if attr.endswith("component") and callable(getattr(module, attr))
                  and getattr(getattr(module, attr), "__module__", None) == module.__name__]
    return sorted(names)


MODULES = _component_factories()


def _factory(name: str):
    module, attr = name.split(".")
    return getattr(importlib.import_module(f"components.{module}"), attr)


def _compiled(module: str, tmp_path: Path) -> tuple[object, dict]:
    comp = _factory(module)(IMAGE)
    out = tmp_path / f"{module}.yaml"
    compiler.Compiler().compile(comp, package_path=str(out))
    spec = yaml.safe_load(out.read_text())
    (definition,) = spec["components"].values()
    return comp, definition.get("outputDefinitions", {})


def _sample_return(func) -> object:
    """A value of the function's declared return type (what the executor then serialises)."""
    annotation = inspect.signature(func).return_annotation
    if annotation in (inspect.Signature.empty, None):
        return None
    if hasattr(annotation, "_fields"):  # NamedTuple
        hints = typing.get_type_hints(annotation)
        return annotation(*(_SAMPLE[hints[f]] for f in annotation._fields))
    return _SAMPLE[annotation]


def _executor_input(outputs: dict, tmp: Path) -> dict:
    """What the backend's driver hands the executor: one output file per declared parameter, one URI per
    declared artifact (plain local paths, as kfp.local gives: kfp maps only gs://, s3://, minio:// and oci://
    URIs to mount paths and reads any other URI as a path, so ``file://...`` would land in ./file:/...)."""
    params = {name: {"outputFile": str(tmp / "parameters" / name)} for name in outputs.get("parameters", {})}
    artifacts = {
        name: {"artifacts": [{"name": name, "type": {"schemaTitle": a["artifactType"]["schemaTitle"]},
                              "uri": str(tmp / "artifacts" / name), "metadata": {}}]}
        for name, a in outputs.get("artifacts", {}).items()
    }
    return {"inputs": {}, "outputs": {"outputFile": str(tmp / "executor_output.json"),
                                      "parameters": params, "artifacts": artifacts}}


def _launcher_missing_parameters(outputs: dict, executor_input: dict, written: dict) -> list[str]:
    """The launcher's collectOutputParameters: every declared output parameter must be in the executor's
    output (``parameterValues``) or in its output file."""
    missing = []
    for name in outputs.get("parameters", {}):
        if name in written.get("parameterValues", {}):
            continue
        if Path(executor_input["outputs"]["parameters"][name]["outputFile"]).is_file():
            continue
        missing.append(name)
    return missing


def test_every_component_module_is_checked():
    steps = ("ingest", "check", "preprocess", "train", "evaluate", "register")
    assert {f"{m}.component" for m in steps} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_ir_output_names_are_what_the_executor_writes(module, tmp_path, monkeypatch):
    comp, outputs = _compiled(module, tmp_path)
    func = comp.python_func

    # 1. The compiler renamed nothing: the IR's outputs are the function's Output[...] arguments and returns.
    annotation = inspect.signature(func).return_annotation
    returned = set(annotation._fields) if hasattr(annotation, "_fields") else (
        set() if annotation in (inspect.Signature.empty, None) else {"Output"})
    declared_artifacts = {name for name, p in inspect.signature(func).parameters.items()
                          if getattr(p.annotation, "__origin__", None) is not None
                          and "Output" in repr(p.annotation)}
    assert set(outputs.get("parameters", {})) == returned, (
        f"{module}: IR output parameters {sorted(outputs.get('parameters', {}))} != returned {sorted(returned)}: "
        "a returned name clashes with an Output[...] argument and the compiler renamed it")
    assert set(outputs.get("artifacts", {})) == declared_artifacts, module

    # 2. What the real executor writes satisfies the backend launcher.
    monkeypatch.setattr(artifact_types, "CONTAINER_TASK_ROOT", artifact_types.CONTAINER_TASK_ROOT)
    executor_input = _executor_input(outputs, tmp_path / "run")
    executor = kfp_executor.Executor(executor_input, func)
    path = executor.write_executor_output(_sample_return(func))
    written = json.loads(Path(path).read_text())
    missing = _launcher_missing_parameters(outputs, executor_input, written)
    assert not missing, f"{module}: the backend's launcher would fail the task: no value for {missing}"
    unknown = set(written.get("parameterValues", {})) - set(outputs.get("parameters", {}))
    assert not unknown, f"{module}: the executor writes parameters the IR does not declare: {unknown}"
    assert set(written.get("artifacts", {})) <= set(outputs.get("artifacts", {})), module


def test_the_pipeline_uses_only_checked_components(tmp_path):
    from pipelines.product_gan import compile_pipeline

    path = compile_pipeline(tmp_path / "p.yaml", (REPO / "params.yaml").read_text(encoding="utf-8"), IMAGE)
    spec = yaml.safe_load_all(path.read_text()).__next__()
    functions = set()
    for executor in spec["deploymentSpec"]["executors"].values():
        args = executor["container"].get("args", [])
        if "--function_to_execute" in args:  # kfp-kubernetes' CreatePVC/DeletePVC run the backend's own stub
            functions.add(args[args.index("--function_to_execute") + 1])
    checked = {_factory(name)(IMAGE).python_func.__name__ for name in MODULES}
    assert functions <= checked, functions - checked
