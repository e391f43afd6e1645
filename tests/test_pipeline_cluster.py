"""What a real cluster sees of the compiled pipeline beyond the DAG: typed run parameters, the run's artifact
store (pipeline root), and the pods' security context."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipelines.product_gan import SETTINGS_TASK, STEP_TASKS, build_pipeline
from pipelines.run_parameters import RUN_PARAMETERS, apply_run_parameters, run_parameter_defaults
from productgan.cli import cli
from productgan.data.preprocess import PreprocessParams
from productgan.gan.recipes import TrainParams
from productgan.metrics.evaluate import EvaluateParams
from productgan.params import ParamsError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text())
IR_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}


def _compile(tmp_path: Path, *overrides: str) -> tuple[dict, dict]:
    out = tmp_path / "p.yaml"
    args = ["--params", str(REPO / "params.yaml"), "pipeline", "compile", "--out", str(out)]
    for o in overrides:
        args += ["--param", o]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    spec, platform = yaml.safe_load_all(out.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, dict]:
    return _compile(tmp_path_factory.mktemp("ir"))


def _all_tasks(spec: dict) -> dict[str, dict]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for task in list(tasks.values()):
        tasks.update(spec["components"][task["componentRef"]["name"]].get("dag", {}).get("tasks", {}))
    return tasks


# --- typed run parameters ----------------------------------------------------------------------------------

def test_typed_run_parameters_are_pipeline_parameters_with_the_params_file_as_default(compiled):
    spec, _ = compiled
    root = spec["root"]["inputDefinitions"]["parameters"]
    defaults = run_parameter_defaults(SHIPPED)
    assert defaults == {"recipe": "default", "steps": 69000, "max_minutes": 10.0, "resolution": 28, "eval_n": 10000}
    for name, (_, kind) in RUN_PARAMETERS.items():
        assert root[name]["parameterType"] == IR_TYPES[kind], name
        assert root[name]["defaultValue"] == defaults[name], name
    # the pipeline function declares exactly these, next to params, dataset_version and force
    fn = inspect.signature(build_pipeline().pipeline_func)
    assert set(fn.parameters) == {"params", "dataset_version", "force", *RUN_PARAMETERS}


def test_every_step_reads_the_params_the_run_settings_step_resolved(compiled):
    spec, _ = compiled
    tasks = _all_tasks(spec)
    settings = tasks[SETTINGS_TASK]["inputs"]["parameters"]
    assert settings["params"] == {"componentInputParameter": "params"}
    for name in RUN_PARAMETERS:
        assert settings[name] == {"componentInputParameter": name}
    resolved = {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": SETTINGS_TASK}}
    assert tasks["ingest"]["inputs"]["parameters"]["params"] == resolved
    assert tasks["retrain-check"]["inputs"]["parameters"]["params"] == resolved
    for name in STEP_TASKS[1:]:  # inside the retrain condition: the same output, handed into the sub-DAG
        assert tasks[name]["inputs"]["parameters"]["params"] == {
            "componentInputParameter": f"pipelinechannel--{SETTINGS_TASK}-Output"}, name


def test_a_params_override_moves_the_typed_default_too(tmp_path):
    spec, _ = _compile(tmp_path, "train.steps=77", "preprocess.resolution=64")
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert root["steps"]["defaultValue"] == 77 and root["resolution"]["defaultValue"] == 64
    assert json.loads(root["params"]["defaultValue"])["train"]["steps"] == 77


def test_typed_values_win_over_params_and_zero_minutes_is_no_budget():
    out = apply_run_parameters(SHIPPED, {"recipe": "baseline", "steps": 5, "max_minutes": 0.0, "resolution": 32,
                                         "eval_n": 100})
    assert out["train"]["recipe"] == "baseline" and out["train"]["steps"] == 5
    assert out["train"]["max_minutes"] is None  # what the trainer reads as "no time budget"
    assert out["preprocess"]["resolution"] == 32 and out["evaluate"]["n"] == 100
    assert "batch_size" not in out["train"]  # what params does not state keeps its default
    assert run_parameter_defaults({**SHIPPED, "train": {**SHIPPED["train"], "max_minutes": None}})["max_minutes"] == 0
    # a key params does not state: the step's default (the shipped params.yaml states none of these)
    assert run_parameter_defaults({}) == run_parameter_defaults(SHIPPED) == {
        "recipe": TrainParams().recipe, "steps": TrainParams().steps, "max_minutes": TrainParams().max_minutes,
        "resolution": PreprocessParams().resolution, "eval_n": EvaluateParams().n}
    with pytest.raises(ParamsError, match=r"params:train.steps: expected int, got 'many'"):
        run_parameter_defaults({**SHIPPED, "train": {**SHIPPED["train"], "steps": "many"}})


def test_run_settings_component_runs_in_a_subprocess_like_a_pod(tmp_path, monkeypatch):
    """The component alone under kfp.local (its body is shipped as source, imports what it needs itself)."""
    import warnings

    from kfp import local

    from components import settings
    from pipelines.local import _python_path

    monkeypatch.setenv("PYTHONPATH", _python_path())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        task = settings.component("registry.example/productgan:test")(
            params=json.dumps(SHIPPED), recipe="baseline", steps=3, max_minutes=0.0, resolution=28, eval_n=50)
    out = json.loads(task.output)
    assert out["train"]["recipe"] == "baseline" and out["train"]["steps"] == 3 and out["evaluate"]["n"] == 50
    assert out["train"]["max_minutes"] is None and out["pipeline"] == SHIPPED["pipeline"]


def test_run_settings_body_imports_no_kfp():
    """Like the other bodies: modules it imports (and the pipelines package itself) must not import kfp."""
    from components import settings

    body = ast.parse(inspect.getsource(settings.run_settings))
    modules = {n.module for n in ast.walk(body) if isinstance(n, ast.ImportFrom) and n.module}
    assert "pipelines.run_parameters" in modules
    for module in {"pipelines", *modules, "pipelines.overrides"}:
        path = REPO / module.replace(".", "/")
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in imported if m.split(".")[0] == "kfp"}, f"{module} imports kfp"


# --- pipeline root -----------------------------------------------------------------------------------------

def test_pipeline_root_is_kfps_default_unless_params_set_one(compiled, tmp_path):
    spec, _ = compiled
    assert "defaultPipelineRoot" not in spec  # the namespace's kfp-launcher config (or KFP's own MinIO) decides
    other, _ = _compile(tmp_path, "pipeline.pipeline_root=s3://team-bucket/kfp")
    assert other["defaultPipelineRoot"] == "s3://team-bucket/kfp"


# --- pod security --------------------------------------------------------------------------------------------

def test_every_step_runs_as_the_images_non_root_user(compiled, tmp_path):
    spec, executors = compiled
    labels = {spec["components"][t["componentRef"]["name"]].get("executorLabel") for t in _all_tasks(spec).values()}
    labels.discard(None)
    # CreatePVC/DeletePVC of train's checkpoint volume run in the backend's driver, not in a pod of ours
    labels -= {label for label in labels if spec["deploymentSpec"]["executors"][label]["container"]["image"]
               .startswith("argostub/")}
    assert len(labels) == 1 + len(STEP_TASKS) + 1  # run-settings, the five steps, retrain-check
    for label in labels:
        assert executors[label]["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001",
                                                       "runAsNonRoot": True}, label
    dockerfile = (REPO / "infra" / "docker" / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile  # the same user the image runs as

    _, plain = _compile(tmp_path, "pipeline.run_as_user=null")
    assert not any("securityContext" in e for e in plain.values())
