"""The compiled pipeline IR: the five steps in order, the early exit, and the cluster settings on each task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipelines.overrides import OverrideError, apply_overrides, split_params
from pipelines.product_gan import SETTINGS_TASK, STEP_TASKS
from pipelines.settings import pipeline_params
from productgan.cli import cli

REPO = Path(__file__).resolve().parents[1]
ALL_TASKS = ("ingest", "retrain-check", *STEP_TASKS[1:])


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("ir") / "product_gan.yaml"
    res = CliRunner().invoke(cli, ["--params", str(REPO / "params.yaml"), "pipeline", "compile", "--out", str(out)])
    assert res.exit_code == 0, res.output
    spec, platform = yaml.safe_load_all(out.read_text())  # the file must be valid YAML (header comments too)
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _tasks(spec: dict) -> dict[str, tuple[dict, str | None]]:
    """task name -> (task, name of the condition task it sits in, or None for the root DAG)."""
    out = {name: (task, None) for name, task in spec["root"]["dag"]["tasks"].items()}
    for cname, (ctask, _) in list(out.items()):
        comp = spec["components"][ctask["componentRef"]["name"]]
        for name, task in comp.get("dag", {}).get("tasks", {}).items():
            out[name] = (task, cname)
    return out


def _upstream(spec: dict, name: str) -> set[str]:
    """Tasks a task waits for: explicit dependencies and producers of its inputs, resolved through its condition."""
    tasks = _tasks(spec)
    task, parent = tasks[name]
    deps = set(task.get("dependentTasks", []))
    inputs = task.get("inputs", {})
    for kind in ("artifacts", "parameters"):
        for value in inputs.get(kind, {}).values():
            for key in ("taskOutputArtifact", "taskOutputParameter"):
                if key in value:
                    deps.add(value[key]["producerTask"])
            channel = value.get("componentInputArtifact") or value.get("componentInputParameter")
            if parent and channel:  # an input handed into the condition's sub-DAG: find its producer outside
                outer = tasks[parent][0]["inputs"].get(kind, {}).get(channel, {})
                for key in ("taskOutputArtifact", "taskOutputParameter"):
                    if key in outer:
                        deps.add(outer[key]["producerTask"])
    if parent:
        deps |= _upstream(spec, parent) | {parent}
    return deps - {name}


def _executor(spec: dict, task_name: str) -> tuple[str, dict]:
    task, _ = _tasks(spec)[task_name]
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return label, spec["deploymentSpec"]["executors"][label]["container"]


def test_five_steps_run_in_order_behind_the_retrain_check(compiled):
    spec, _ = compiled
    tasks = _tasks(spec)
    assert set(ALL_TASKS) <= set(tasks)
    for before, after in zip(STEP_TASKS, STEP_TASKS[1:], strict=False):
        assert before in _upstream(spec, after), f"{after} does not wait for {before}"
        assert after not in _upstream(spec, before)
    # run-settings (the typed run parameters applied to params) comes first; every step reads its result
    assert _upstream(spec, SETTINGS_TASK) == set()
    assert _upstream(spec, "ingest") == {SETTINGS_TASK}
    assert _upstream(spec, "retrain-check") == {"ingest", SETTINGS_TASK}
    # each step's data comes from the step before (artifacts, not just ordering)
    prep_in = tasks["preprocess"][0]["inputs"]["artifacts"]["data"]["componentInputArtifact"]
    assert prep_in == "pipelinechannel--ingest-data"
    train_in = tasks["train"][0]["inputs"]["artifacts"]["prepared"]["taskOutputArtifact"]
    assert train_in == {"outputArtifactKey": "prepared", "producerTask": "preprocess"}
    reg_in = tasks["register"][0]["inputs"]["artifacts"]
    assert reg_in["generator"]["taskOutputArtifact"]["producerTask"] == "train"
    assert reg_in["evaluation"]["taskOutputArtifact"]["producerTask"] == "evaluate"


def test_run_ends_early_when_the_check_finds_nothing_new(compiled):
    spec, _ = compiled
    tasks = _tasks(spec)
    assert tasks["ingest"][1] is None and tasks["retrain-check"][1] is None
    (condition,) = {tasks[s][1] for s in STEP_TASKS[1:]}
    assert condition is not None
    ctask = tasks[condition][0]
    assert ctask["taskInfo"]["name"] == "retrain"
    cond = ctask["triggerPolicy"]["condition"]
    assert "pipelinechannel--retrain-check-Output" in cond and cond.rstrip().endswith("== true")
    params = ctask["inputs"]["parameters"]["pipelinechannel--retrain-check-Output"]
    assert params["taskOutputParameter"] == {"outputParameterKey": "Output", "producerTask": "retrain-check"}
    # the check and ingest look at the outside world: never served from the cache
    for name in ("ingest", "retrain-check"):
        assert tasks[name][0]["cachingOptions"].get("enableCache") is not True
    assert tasks["train"][0]["cachingOptions"]["enableCache"] is True


def test_dataset_version_is_a_parameter_of_the_pipeline_and_of_every_step(compiled):
    spec, _ = compiled
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert root["dataset_version"]["parameterType"] == "STRING" and root["dataset_version"]["defaultValue"] == ""
    assert root["force"]["parameterType"] == "BOOLEAN" and root["force"]["defaultValue"] is False
    assert json.loads(root["params"]["defaultValue"]) == yaml.safe_load((REPO / "params.yaml").read_text())
    tasks = _tasks(spec)
    assert tasks["ingest"][0]["inputs"]["parameters"]["dataset_version"] == {
        "componentInputParameter": "dataset_version"
    }
    # downstream steps key on the version ingest found (the DVC hash of what it ingested)
    assert tasks["retrain-check"][0]["inputs"]["parameters"]["dataset_version"]["taskOutputParameter"] == {
        "outputParameterKey": "dataset_version", "producerTask": "ingest"}
    for step in STEP_TASKS[1:]:
        assert tasks[step][0]["inputs"]["parameters"]["dataset_version"] == {
            "componentInputParameter": "pipelinechannel--ingest-dataset_version"
        }


def test_train_asks_for_a_gpu_node(compiled, tmp_path):
    spec, platform = compiled
    label, container = _executor(spec, "train")
    accelerator = container["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1"
    # by default no node selector and no toleration: the GPU request alone finds a GPU node, also on clusters
    # without NVIDIA's GPU feature discovery (which sets nvidia.com/gpu.present)
    for name in ALL_TASKS:
        k8s = platform[_executor(spec, name)[0]]
        assert "nodeSelector" not in k8s and "tolerations" not in k8s, name
    for other in ("ingest", "retrain-check", "preprocess", "register"):  # evaluate: tests/test_pipeline_scaling.py
        other_label, other_container = _executor(spec, other)
        assert "accelerator" not in other_container.get("resources", {})

    # the count, a node selector and tolerations come from params
    out = tmp_path / "p.yaml"
    res = CliRunner().invoke(cli, ["--params", str(REPO / "params.yaml"), "pipeline", "compile", "--out", str(out),
                                   "--param", "pipeline.gpus=2",
                                   "--param", 'pipeline.gpu_node_selector={nvidia.com/gpu.present: "true"}',
                                   "--param", "pipeline.gpu_tolerations=[{key: nvidia.com/gpu, effect: NoSchedule}, "
                                   "{key: team, operator: Equal, value: ml}]"])
    assert res.exit_code == 0, res.output
    two, two_platform = yaml.safe_load_all(out.read_text())
    assert two["deploymentSpec"]["executors"][label]["container"]["resources"]["accelerator"]["resourceCount"] == "2"
    k8s = two_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label]
    assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert k8s["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                                  {"key": "team", "operator": "Equal", "value": "ml"}]
    # evaluate has a GPU too (pipeline.evaluate_gpus) and lands on the same nodes
    eval_k8s = two_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][_executor(two, "evaluate")[0]]
    assert eval_k8s["nodeSelector"] == k8s["nodeSelector"] and eval_k8s["tolerations"] == k8s["tolerations"]
    for other in ("ingest", "retrain-check", "preprocess", "register"):
        other_k8s = two_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][_executor(two, other)[0]]
        assert "nodeSelector" not in other_k8s and "tolerations" not in other_k8s, other


def test_every_step_requests_cpu_and_memory(compiled):
    spec, _ = compiled
    res = pipeline_params(yaml.safe_load((REPO / "params.yaml").read_text())).resources
    for name in ALL_TASKS:
        _, container = _executor(spec, name)
        want = getattr(res, name.replace("-", "_"))
        assert container["resources"]["resourceCpuRequest"] == want.cpu, name
        assert container["resources"]["resourceMemoryRequest"] == want.memory, name


def test_retries_on_ingest_register_and_train_only(compiled):
    spec, _ = compiled
    tasks = _tasks(spec)
    for name in ("ingest", "register", "train"):  # train: after an eviction (tests/test_pipeline_scaling.py)
        policy = tasks[name][0]["retryPolicy"]
        assert policy["maxRetryCount"] == 3 and policy["backoffDuration"] == "30s"
    for name in ("retrain-check", "preprocess", "evaluate"):
        assert "retryPolicy" not in tasks[name][0], name


def test_credentials_come_from_secrets_and_endpoints_from_the_config_map(compiled):
    spec, platform = compiled

    def secrets(task: str) -> dict[str, set[str]]:
        label, _ = _executor(spec, task)
        return {s["secretName"]: {k["envVar"] for k in s["keyToEnv"]} for s in platform[label].get("secretAsEnv", [])}

    s3 = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    mlflow = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert secrets("ingest") == {"productgan-s3": s3}
    for name in ("retrain-check", "train", "evaluate", "register"):
        assert secrets(name) == {"productgan-mlflow": mlflow}, name
    assert secrets("preprocess") == {}
    for name in ALL_TASKS:
        label, container = _executor(spec, name)
        (cm,) = platform[label]["configMapAsEnv"]
        assert cm["configMapName"] == "productgan-config"
        assert {k["envVar"] for k in cm["keyToEnv"]} == {"MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL"}
        # no credentials baked into the spec itself
        assert not any("SECRET" in e.get("name", "") for e in container.get("env", []))


def test_components_run_the_project_image_without_installing_anything(compiled, tmp_path):
    spec, _ = compiled
    image = pipeline_params(yaml.safe_load((REPO / "params.yaml").read_text())).image
    for name in ALL_TASKS:
        _, container = _executor(spec, name)
        assert container["image"] == image
        assert "pip install" not in " ".join(container["command"]), f"{name} would pip install at pod start"
        assert "from components." in container["command"][-1]  # the body calls into the installed package

    out = tmp_path / "p.yaml"
    res = CliRunner().invoke(cli, ["--params", str(REPO / "params.yaml"), "pipeline", "compile", "--out", str(out),
                                   "--image", "registry.example/productgan:abc123", "--param", "train.steps=7"])
    assert res.exit_code == 0, res.output
    other, _ = yaml.safe_load_all(out.read_text())
    # argostub/*: the backend's own CreatePVC / DeletePVC (kfp-kubernetes), run by the driver, not as pods
    assert {e["container"]["image"] for e in other["deploymentSpec"]["executors"].values()
            if not e["container"]["image"].startswith("argostub/")} == {"registry.example/productgan:abc123"}
    assert json.loads(other["root"]["inputDefinitions"]["parameters"]["params"]["defaultValue"])["train"]["steps"] == 7


def test_param_overrides_split_and_apply():
    inputs = {"params": "STRING", "dataset_version": "STRING", "force": "BOOLEAN"}
    overrides, args = split_params(["train.lr=1e-4", "ingest.source=s3://b/p", "force=true", "dataset_version=007"],
                                   inputs)
    assert args == {"force": True, "dataset_version": "007"}  # strings stay strings
    params = apply_overrides({"train": {"lr": 0.1}, "ingest": {}}, overrides)
    assert params == {"train": {"lr": 1e-4}, "ingest": {"source": "s3://b/p"}}
    assert apply_overrides({}, [("pipeline.resources.train.cpu", "8")]) == {
        "pipeline": {"resources": {"train": {"cpu": "8"}}}}
    with pytest.raises(OverrideError, match="not a section"):
        apply_overrides({"train": {"lr": 0.1}}, [("train.lr.x", 1)])
    with pytest.raises(OverrideError, match="KEY=VALUE"):
        split_params(["train.lr"], inputs)


def test_component_bodies_import_only_kfp_free_modules(compiled):
    """Inside a pod the KFP executor has kfp.dsl half-imported; a body importing a module that imports kfp
    dies with a circular import. Bodies may use components.runtime / components.retrain and productgan."""
    import ast

    spec, _ = compiled
    for name in ALL_TASKS:
        _, container = _executor(spec, name)
        body = ast.parse(container["command"][-1])
        modules = {n.module for n in ast.walk(body) if isinstance(n, ast.ImportFrom) and n.module}
        ours = {m for m in modules if m.split(".")[0] in ("components", "pipelines", "productgan")}
        assert ours, name
        for module in ours:
            path = REPO / (module.replace(".", "/") + ".py")
            tree = ast.parse(path.read_text())
            imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            assert not {m for m in imported if m.split(".")[0] == "kfp"}, f"{name}: {module} imports kfp"
