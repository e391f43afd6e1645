"""How the compiled pipeline scales (pipelines/scaling.py): train's checkpoint volume, retries and resume,
torchrun for several GPUs (and a 2-process gloo run through the train component itself), evaluate on a GPU with
the Inception fid, and the PyTorchJob launcher."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from train_helpers import small_prepared

from components.runtime import step_command
from pipelines.local import local_settings
from pipelines.overrides import apply_overrides
from pipelines.product_gan import build_pipeline, params_argument
from pipelines.settings import pipeline_params
from productgan.metrics.evaluate import EvaluateParams
from productgan.params import ParamsError

REPO = Path(__file__).resolve().parents[1]
MOUNT = "/mnt/productgan/checkpoints"


def _compile(tmp_path: Path, **overrides) -> tuple[dict, dict, dict]:
    """(spec, kubernetes executor configs, tasks of the retrain condition) with ``section.key`` overrides."""
    from kfp import compiler

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = apply_overrides(params, [(k.replace("__", "."), v) for k, v in overrides.items()])
    out = tmp_path / f"ir-{len(list(tmp_path.glob('ir-*')))}.yaml"
    compiler.Compiler().compile(build_pipeline(params_argument(params)), package_path=str(out))
    spec, platform = yaml.safe_load_all(out.read_text())
    tasks = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], tasks


def _container(spec: dict, tasks: dict, name: str) -> tuple[str, dict]:
    label = spec["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
    return label, spec["deploymentSpec"]["executors"][label]["container"]


def _constant(task: dict, name: str):
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


# --- checkpoints survive an eviction -----------------------------------------------------------------------------

def test_train_checkpoints_on_a_per_run_volume_with_retries(tmp_path):
    spec, k8s, tasks = _compile(tmp_path)
    create, train, delete = tasks["createpvc"], tasks["train"], tasks["deletepvc"]
    assert _constant(create, "access_modes") == ["ReadWriteOnce"] and _constant(create, "size") == "20Gi"
    assert _constant(create, "storage_class_name") == "standard"  # KFP's driver sets it verbatim
    label, _ = _container(spec, tasks, "train")
    (mount,) = k8s[label]["pvcMount"]
    assert mount["mountPath"] == MOUNT
    assert mount["pvcNameParameter"]["taskOutputParameter"] == {"outputParameterKey": "name",
                                                               "producerTask": "createpvc"}
    assert "createpvc" in train["dependentTasks"]
    # the train component keeps its checkpoints there and resumes from them when the task is retried
    assert _constant(train, "checkpoint_root") == MOUNT and _constant(train, "run_id") == ""
    assert train["retryPolicy"]["maxRetryCount"] == 3
    # the volume goes once train has succeeded
    assert delete["inputs"]["parameters"]["pvc_name"]["taskOutputParameter"]["producerTask"] == "createpvc"
    assert "train" in delete["dependentTasks"]


def test_an_existing_claim_is_shared_with_a_folder_per_run(tmp_path):
    spec, k8s, tasks = _compile(tmp_path, pipeline__checkpoints__pvc="team-checkpoints", pipeline__train_retries=5)
    assert "createpvc" not in tasks and "deletepvc" not in tasks
    label, _ = _container(spec, tasks, "train")
    assert k8s[label]["pvcMount"][0]["pvcNameParameter"]["runtimeValue"]["constant"] == "team-checkpoints"
    assert _constant(tasks["train"], "run_id") == "{{$.pipeline_job_uuid}}"
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 5


def test_local_runs_use_a_plain_folder_and_no_cluster_features(tmp_path):
    settings = local_settings(tmp_path / "ck")
    spec, k8s, tasks = _compile(tmp_path, **{k.replace(".", "__"): v for k, v in settings.items()})
    assert "createpvc" not in tasks
    label, _ = _container(spec, tasks, "train")
    assert "pvcMount" not in k8s.get(label, {})
    assert _constant(tasks["train"], "checkpoint_root") == str(tmp_path / "ck")
    assert _constant(tasks["train"], "run_id") == "{{$.pipeline_job_uuid}}"  # a folder per run
    assert _constant(tasks["evaluate"], "add_metrics") == ""


def test_settings_that_cannot_work_are_refused():
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    with pytest.raises(ParamsError, match="storage_class"):
        pipeline_params(apply_overrides(base, [("pipeline.checkpoints.storage_class", "")]))
    with pytest.raises(ParamsError, match="ReadWriteMany"):
        pipeline_params(apply_overrides(base, [("pipeline.train_launcher", "pytorchjob")]))
    with pytest.raises(ParamsError, match="shared by its pods"):
        pipeline_params(apply_overrides(base, [("pipeline.train_launcher", "pytorchjob"),
                                               ("pipeline.checkpoints.pvc", "none")]))
    with pytest.raises(ParamsError, match="train_launcher"):
        pipeline_params(apply_overrides(base, [("pipeline.train_launcher", "slurm")]))


# --- evaluation on the GPU ----------------------------------------------------------------------------------------

def test_evaluate_asks_for_a_gpu_and_computes_the_inception_metrics_everywhere(tmp_path):
    """The Inception metrics are in evaluate's default list (fid_n auto: 10k on the GPU, fewer on a CPU), so the
    GPU adds nothing by default; evaluate_gpu_metrics can still add GPU-only metrics."""
    shipped = EvaluateParams()
    assert {"fid", "fid_inf", "fid_per_category"} <= set(shipped.metrics) and shipped.fid_n == "auto"
    spec, _, tasks = _compile(tmp_path)
    _, container = _container(spec, tasks, "evaluate")
    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert container["resources"]["accelerator"]["resourceCount"] == "1"
    assert _constant(tasks["evaluate"], "add_metrics") == ""

    spec, _, tasks = _compile(tmp_path, pipeline__evaluate_gpu_metrics=["kid"])
    assert _constant(tasks["evaluate"], "add_metrics") == "kid"
    spec, _, tasks = _compile(tmp_path, pipeline__evaluate_gpus=0, pipeline__evaluate_gpu_metrics=["kid"])
    _, container = _container(spec, tasks, "evaluate")
    assert "accelerator" not in container.get("resources", {})
    assert _constant(tasks["evaluate"], "add_metrics") == ""


def test_evaluate_and_register_share_the_statistics_cache_volume(tmp_path):
    """Real statistics once per dataset version: evaluate and register mount the claim that outlives runs and
    read $PRODUCTGAN_CACHE there; a local run (no volumes) uses a folder of its workdir instead."""
    spec, k8s, tasks = _compile(tmp_path)
    for step in ("evaluate", "register"):
        label, container = _container(spec, tasks, step)
        (mount,) = k8s[label]["pvcMount"]
        assert mount["mountPath"] == "/mnt/productgan/cache"
        assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "productgan-cache"
        assert {"name": "PRODUCTGAN_CACHE", "value": "/mnt/productgan/cache"} in container["env"]
    assert "createpvc-2" not in tasks  # never a claim per run: that would recompute everything

    settings = local_settings(tmp_path / "ck")
    spec, k8s, tasks = _compile(tmp_path, **{k.replace(".", "__"): v for k, v in settings.items()})
    for step in ("evaluate", "register"):
        label, container = _container(spec, tasks, step)
        assert "pvcMount" not in k8s.get(label, {})
        assert not any(e["name"] == "PRODUCTGAN_CACHE" for e in container.get("env", []))
    with pytest.raises(ParamsError, match="stats_cache"):
        pipeline_params(apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()),
                                        [("pipeline.stats_cache.pvc", "create")]))


def test_evaluate_component_adds_metrics_to_the_params_it_runs_with(tmp_path, monkeypatch):
    """The component body writes params with evaluate.metrics + fid (each once) for `productgan evaluate`."""
    import components.evaluate as comp

    seen = {}

    def fake_run_step(step, args, work, nproc=1):
        seen.update(yaml.safe_load((work / "params.yaml").read_text())["evaluate"])
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"fid2k": 1.0}))

    monkeypatch.setattr("components.runtime.run_step", fake_run_step)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///unused.db")
    from kfp.dsl import Artifact, Dataset, Markdown, Metrics, Model

    params = json.dumps({"evaluate": {"metrics": ["fd_domain", "kid"]}})
    comp.evaluate(params, "", Model(uri=str(tmp_path / "g")), Dataset(uri=str(tmp_path / "d")),
                  Artifact(uri=str(tmp_path / "e")), Metrics(uri=str(tmp_path / "m")),
                  Markdown(uri=str(tmp_path / "r.md")), add_metrics="fid,kid")
    assert seen["metrics"] == ["fd_domain", "kid", "fid"]


# --- several GPUs in the train pod: torchrun --------------------------------------------------------------------

def test_train_launches_torchrun_with_one_process_per_gpu(tmp_path):
    assert step_command("train", ["--data", "d"], 1) == [sys.executable, "-m", "productgan", "train", "--data", "d"]
    assert step_command("train", ["--data", "d"], 4) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
        "-m", "productgan", "train", "--data", "d"]
    _, _, tasks = _compile(tmp_path, pipeline__gpus=4)
    assert _constant(tasks["train"], "nproc") == 4


def test_train_component_runs_two_gloo_processes_at_tiny_size(tmp_path, monkeypatch, capfd, cli_env, fmnist_small):
    """The train component's own launch path with nproc=2 on CPU: DDP over gloo, checkpoints in
    <checkpoint_root>/checkpoints/train, the generator in the output folder."""
    from kfp.dsl import Dataset, Metrics, Model
    from mlflow import MlflowClient

    import components.train as comp
    from productgan.gan.checkpoint import load_latest

    data = small_prepared(tmp_path, fmnist_small)
    monkeypatch.setenv("PYTHONPATH", cli_env["PYTHONPATH"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tiny = {"g_channels": 4, "d_channels": 4, "lr_schedule": "constant"}
    params = json.dumps({"train": {"recipe": "default", "steps": 4, "batch_size": 4, "checkpoint_every": 2,
                                   "sync_every": 1, "log_every": 2, "sample_every": 1000, "grid_columns": 2,
                                   "max_minutes": None, **tiny}})
    generator, metrics = Model(uri=str(tmp_path / "generator")), Metrics(uri=str(tmp_path / "metrics"))
    comp.train(params, "", Dataset(uri=str(data)), generator, metrics, checkpoint_root=str(tmp_path / "ck"),
               nproc=2)
    log = capfd.readouterr()
    assert "--nproc_per_node=2" in log.out
    assert "x 2 process(es)" in log.out + log.err
    _, state = load_latest(tmp_path / "ck" / "checkpoints" / "train")  # relative to the kept working folder
    assert (tmp_path / "ck" / "params.yaml").is_file()
    assert state["step"] == 4
    assert (tmp_path / "generator" / "generator.safetensors").is_file()
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(generator.metadata["mlflow_run_id"])
    assert run.data.params["world_size"] == "2"


# --- several nodes: a PyTorchJob ----------------------------------------------------------------------------------

def test_pytorchjob_launcher_waits_in_a_cpu_pod_on_a_shared_volume(tmp_path):
    spec, k8s, tasks = _compile(tmp_path, pipeline__train_launcher="pytorchjob", pipeline__gpus=8,
                                pipeline__checkpoints__access_mode="ReadWriteMany")
    assert _constant(tasks["createpvc"], "access_modes") == ["ReadWriteMany"]
    label, container = _container(spec, tasks, "train")
    assert "from components.pytorchjob import" in container["command"][-1]  # components/train_job.py
    assert "accelerator" not in container.get("resources", {})  # the job's pods ask for the GPUs
    assert k8s[label]["pvcMount"][0]["mountPath"] == MOUNT
    job = json.loads(_constant(tasks["train"], "job"))
    assert job["nodes"] == 2 and job["nproc_per_node"] == 8 and job["gpus_per_node"] == 8
    assert job["image"] == container["image"] and job["mount_path"] == MOUNT
    assert _constant(tasks["train"], "run_id") == "{{$.pipeline_job_uuid}}"
    assert tasks["train"]["inputs"]["parameters"]["pvc_name"]["taskOutputParameter"]["producerTask"] == "createpvc"


# --- a catalogue: preprocess sharded over pods ----------------------------------------------------------------------

def test_preprocess_shards_fan_out_and_merge_in_the_ir(tmp_path):
    spec, _, tasks = _compile(tmp_path, pipeline__preprocess_shards=4)
    assert "preprocess" not in tasks
    (loop_name,) = [n for n, t in tasks.items() if n.startswith("for-loop")]
    loop = tasks[loop_name]
    assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2, 3]"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 4
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"preprocess-shard"}
    merge = tasks["preprocess-merge"]
    assert merge["inputs"]["artifacts"]["parts"]["taskOutputArtifact"] == {
        "outputArtifactKey": "pipelinechannel--preprocess-shard-part", "producerTask": loop_name}
    assert tasks["train"]["inputs"]["artifacts"]["prepared"]["taskOutputArtifact"]["producerTask"] == "preprocess-merge"


@pytest.mark.slow
def test_sharded_preprocess_runs_under_kfp_local_and_matches_one_process(tmp_path, monkeypatch, cli_env, fmnist_dir):
    """ingest -> 2 shard tasks (ParallelFor) -> merge (Collected), the real components under kfp.local; the merged
    arrays and manifest equal one `run_preprocess` of the same ingested folder, byte for byte."""
    from kfp import dsl, local

    from components import ingest, preprocess
    from pipelines import scaling
    from pipelines.local import make_tiny_source
    from productgan.data.preprocess import PreprocessParams, run_preprocess
    from productgan.io import sha256_file

    source = make_tiny_source(tmp_path / "source", per_category=6)
    params = apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()),
                             [("ingest.source", str(source)), ("pipeline.preprocess_shards", 2)])
    cfg = pipeline_params(params)
    image = cfg.image
    ops = preprocess.component(image), preprocess.shard_component(image), preprocess.merge_component(image)
    ingest_op = ingest.component(image)

    def sharded(params):
        ingested = ingest_op(params=params, dataset_version="")
        scaling.preprocess_step(*ops, cfg, lambda task: None, params=params,
                                dataset_version=ingested.outputs["dataset_version"], data=ingested.outputs["data"])

    sharded.__annotations__ = {"params": str}  # a real type: this module's annotations are strings
    sharded = dsl.pipeline(sharded, name="sharded-preprocess")

    monkeypatch.setenv("PYTHONPATH", cli_env["PYTHONPATH"])
    monkeypatch.setenv("PRODUCTGAN_FASHION_MNIST", str(fmnist_dir))
    root = tmp_path / "root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        sharded(params=params_argument(params))
    (run,) = root.iterdir()
    merged = run / "preprocess-merge" / "prepared"
    one = run_preprocess(run / "ingest" / "data", tmp_path / "one", PreprocessParams(), progress=False)
    assert one["counts"]["train"]["total"] > 0
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.name for p in merged.iterdir()) == files
    assert all(sha256_file(merged / f) == sha256_file(tmp_path / "one" / f) for f in files)
