"""Training over several nodes as a Kubeflow PyTorchJob (components/pytorchjob.py): the manifest rendered from
params.yaml validates against the Training Operator's CRD schema (tests/schemas/, offline), and the create / wait
logic runs against a fake Kubernetes API on 127.0.0.1 through the Kubeflow Training SDK and the kubernetes client:
created, polled to Succeeded; Failed ends with the operator's reason and where to look; a retried step reuses a
running job or starts the next one after a failed one; a job that never ends is deleted."""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml

from components.pytorchjob import JobFailed, JobSpec, job_name, manifest, render_pytorchjob, run_pytorchjob
from pipelines.overrides import apply_overrides
from pipelines.product_gan import CONFIG_KEYS, MLFLOW_KEYS
from pipelines.scaling import pytorchjob_settings
from pipelines.settings import pipeline_params
from productgan.gan.checkpoint import load_latest

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "tests" / "schemas" / "kubeflow.org_v1_pytorchjob.schema.json").read_text())
RUN_ID = "3f2a9c1e-7b4d-4e8a-9f00-1234567890ab"


def _spec(nodes: int = 3, gpus: int = 4, namespace: str | None = "team") -> JobSpec:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = apply_overrides(params, [("pipeline.train_launcher", "pytorchjob"), ("pipeline.gpus", gpus),
                                      ("pipeline.pytorchjob.nodes", nodes),
                                      ("pipeline.checkpoints.access_mode", "ReadWriteMany")])
    settings = pytorchjob_settings(pipeline_params(params), "registry.example/productgan:abc", CONFIG_KEYS,
                                   MLFLOW_KEYS)
    settings.pop("timeout_s"), settings.pop("poll_s")
    base = f"{settings['mount_path']}/{RUN_ID}"
    return JobSpec(name=job_name(RUN_ID), pvc_name="run-checkpoints", work_dir=f"{base}/work",
                   data_dir=f"{base}/prepared", out_dir=f"{base}/generator", namespace=namespace,
                   python="/opt/venv/bin/python", **settings)


def _validate(doc: dict) -> None:
    assert doc["apiVersion"] == f"{SCHEMA['group']}/{SCHEMA['version']}" and doc["kind"] == SCHEMA["kind"]
    jsonschema.Draft7Validator(SCHEMA["openAPIV3Schema"]).validate(doc)


def test_manifest_from_params_validates_against_the_crd_schema():
    doc = manifest(render_pytorchjob(_spec(nodes=3, gpus=4)))
    _validate(doc)
    spec = doc["spec"]
    assert spec["nprocPerNode"] == "4"
    master, worker = spec["pytorchReplicaSpecs"]["Master"], spec["pytorchReplicaSpecs"]["Worker"]
    assert master["replicas"] == 1 and worker["replicas"] == 2
    assert spec["runPolicy"]["backoffLimit"] == 3 and spec["runPolicy"]["activeDeadlineSeconds"] == 2880 * 60
    assert spec["runPolicy"]["ttlSecondsAfterFinished"] == 24 * 3600  # then the run's volume can go
    for replica in (master, worker):
        pod = replica["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch" and container["image"] == "registry.example/productgan:abc"
        assert container["command"][:3] == ["/opt/venv/bin/python", "-m", "torch.distributed.run"]
        assert container["command"][3:6] == ["-m", "productgan", "train"] and container["command"][-1] == "--resume"
        assert container["resources"]["limits"] == {"nvidia.com/gpu": "4"}
        env = {e["name"]: e for e in container["env"]}
        assert env["PRODUCTGAN_PARAMS"]["value"].endswith(f"{RUN_ID}/work/params.yaml")
        assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["configMapKeyRef"]["name"] == "productgan-config"
        assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "productgan-mlflow"
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims == ["run-checkpoints"]
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/mnt/productgan/checkpoints", "/dev/shm"}

    one = manifest(render_pytorchjob(_spec(nodes=1, gpus=1)))
    _validate(one)
    assert set(one["spec"]["pytorchReplicaSpecs"]) == {"Master"}


def test_the_schema_check_catches_a_broken_manifest():
    doc = manifest(render_pytorchjob(_spec()))
    bad = copy.deepcopy(doc)
    bad["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        _validate(bad)
    bad = copy.deepcopy(doc)
    del bad["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(bad)


def test_job_names_are_dns_labels():
    for run_id in (RUN_ID, "Run_With.Odd/Chars", "", "x" * 80):
        for attempt in (0, 3):
            name = job_name(run_id, attempt)
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name


# --- a fake Kubernetes API (the PyTorchJob endpoints the SDK calls) ----------------------------------------------

class FakeKube:
    """PyTorchJobs in memory; each GET of a job reveals the next condition of its ``script``."""

    def __init__(self, script: list[tuple[str, str, str]]):
        self.script = script  # (type, reason, message) revealed one per GET
        self.jobs: dict[tuple[str, str], dict] = {}
        self.reads: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, namespace: str, name: str, conditions: list[tuple[str, str, str]]) -> None:
        """A job an earlier attempt of the step created."""
        body = manifest(render_pytorchjob(_spec()))
        body["metadata"].update(name=name, namespace=namespace)
        self.jobs[(namespace, name)] = {**body, "status": {"conditions": [self._condition(*c) for c in conditions]}}
        self.reads[(namespace, name)] = len(self.script)  # a job that was there before: no further progress

    @staticmethod
    def _condition(kind: str, reason: str, message: str) -> dict:
        return {"type": kind, "status": "True", "reason": reason, "message": message,
                "lastTransitionTime": "2026-11-30T00:00:00Z", "lastUpdateTime": "2026-11-30T00:00:00Z"}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        path_re = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/pytorchjobs(?:/([^/?]+))?")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> tuple[str, str | None] | None:
                match = path_re.match(self.path)
                if not match:
                    self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return None
                return match.group(1), match.group(2)

            def do_POST(self):
                route = self._route()
                if route is None:
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = (route[0], body["metadata"]["name"])
                with fake.lock:
                    fake.calls.append(("POST", key[1]))
                    if key in fake.jobs:
                        return self._send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                    fake.jobs[key] = {**body, "status": {}}
                    fake.reads[key] = 0
                self._send(201, fake.jobs[key])

            def do_GET(self):
                route = self._route()
                if route is None:
                    return
                key = (route[0], route[1] or "")
                with fake.lock:
                    fake.calls.append(("GET", key[1]))
                    job = fake.jobs.get(key)
                    if job is None:
                        return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound",
                                                "message": f'pytorchjobs.kubeflow.org "{key[1]}" not found'})
                    shown = fake.reads[key]
                    if shown < len(fake.script):
                        job["status"]["conditions"] = [fake._condition(*c) for c in fake.script[: shown + 1]]
                        fake.reads[key] = shown + 1
                self._send(200, job)

            def do_DELETE(self):
                route = self._route()
                if route is None:
                    return
                with fake.lock:
                    fake.calls.append(("DELETE", route[1] or ""))
                    fake.jobs.pop((route[0], route[1] or ""), None)
                self._send(200, {"kind": "Status", "status": "Success"})

        return Handler


@pytest.fixture()
def kube():
    """Start a FakeKube on 127.0.0.1 (a free port); yields (fake, TrainingClient factory)."""
    from kubeflow.training import TrainingClient
    from kubernetes import client as k8s

    servers = []

    def start(script):
        fake = FakeKube(script)
        server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        config = k8s.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
        return fake, TrainingClient(client_configuration=config, namespace="team")

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_job_is_created_and_polled_until_it_succeeds(kube):
    fake, client = kube([("Created", "PyTorchJobCreated", ""), ("Running", "PyTorchJobRunning", ""),
                         ("Succeeded", "PyTorchJobSucceeded", "finished")])
    lines: list[str] = []
    job = run_pytorchjob(client, _spec(), RUN_ID, timeout_s=30, poll_s=0.01, log=lines.append)
    name = job_name(RUN_ID)
    assert job.metadata.name == name and job.status.conditions[-1].type == "Succeeded"
    posted = fake.jobs[("team", name)]
    _validate({k: v for k, v in posted.items() if k != "status"})  # what reached the API server is valid
    assert [c for c in fake.calls if c[0] == "POST"] == [("POST", name)]
    states = [line.rsplit(": ", 1)[1] for line in lines if line.startswith("train: PyTorchJob team/")]
    assert states == ["Created", "Running", "Succeeded"]


def test_a_failed_job_ends_the_step_with_the_reason_and_where_to_look(kube):
    fake, client = kube([("Created", "PyTorchJobCreated", ""), ("Running", "PyTorchJobRunning", ""),
                         ("Failed", "PyTorchJobFailed", "master-0 exited with code 1 (OOMKilled)")])
    with pytest.raises(JobFailed) as info:
        run_pytorchjob(client, _spec(), RUN_ID, timeout_s=30, poll_s=0.01, log=lambda _: None)
    message = str(info.value)
    name = job_name(RUN_ID)
    assert f"team/{name} failed" in message and "OOMKilled" in message
    assert f"kubectl -n team logs {name}-master-0" in message and "resumes" in message


def test_a_retried_step_reuses_a_running_job_and_replaces_a_failed_one(kube):
    fake, client = kube([("Succeeded", "PyTorchJobSucceeded", "")])
    fake.add("team", job_name(RUN_ID), [("Running", "PyTorchJobRunning", "")])
    fake.reads[("team", job_name(RUN_ID))] = 0  # it goes on to Succeeded
    run_pytorchjob(client, _spec(), RUN_ID, timeout_s=30, poll_s=0.01, log=lambda _: None)
    assert not [c for c in fake.calls if c[0] == "POST"]  # waited for the earlier attempt's job

    fake, client = kube([("Succeeded", "PyTorchJobSucceeded", "")])
    fake.add("team", job_name(RUN_ID), [("Failed", "PyTorchJobFailed", "evicted")])
    job = run_pytorchjob(client, _spec(), RUN_ID, timeout_s=30, poll_s=0.01, log=lambda _: None)
    assert job.metadata.name == job_name(RUN_ID, 1)  # the failed one is kept for its logs
    assert [c for c in fake.calls if c[0] == "POST"] == [("POST", job_name(RUN_ID, 1))]


def test_a_job_that_never_finishes_is_deleted(kube):
    fake, client = kube([("Created", "PyTorchJobCreated", ""), ("Running", "PyTorchJobRunning", "")])
    with pytest.raises(JobFailed, match="did not finish"):
        run_pytorchjob(client, _spec(), RUN_ID, timeout_s=0.1, poll_s=0.01, log=lambda _: None)
    assert ("DELETE", job_name(RUN_ID)) in fake.calls and not fake.jobs


# --- the train step of the pytorchjob launcher, end to end at tiny size ------------------------------------------

class FakeOperator(FakeKube):
    """A FakeKube that, like the Training Operator for a Master-only job, runs the Master container's command
    (in its workingDir, with its literal env and the PET_* variables the operator sets) when the job is created;
    the job is Running while it runs, then Succeeded or Failed by its exit code."""

    def __init__(self, env: dict[str, str]):
        super().__init__([])
        self.env, self.procs = env, {}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        base, fake = super().handler(), self

        class Handler(base):
            def do_POST(self):
                super().do_POST()
                key, job = next(reversed(fake.jobs.items()))
                fake.start(key, job)

            def do_GET(self):
                for key, proc in list(fake.procs.items()):
                    code = proc.poll()
                    state = ("Running", "", "") if code is None else (
                        ("Succeeded", "PyTorchJobSucceeded", "") if code == 0
                        else ("Failed", "PyTorchJobFailed", f"master-0 exited with code {code}"))
                    if key in fake.jobs:
                        fake.jobs[key]["status"] = {"conditions": [fake._condition("Created", "", ""),
                                                                   fake._condition(*state)]}
                super().do_GET()

        return Handler

    def start(self, key, job) -> None:
        import socket
        import subprocess

        spec = job["spec"]
        (container,) = spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**self.env, **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
               "PET_NNODES": "1", "PET_NODE_RANK": "0", "PET_NPROC_PER_NODE": spec["nprocPerNode"],
               "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port)}
        log = open(Path(container["workingDir"]) / "master-0.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[key] = subprocess.Popen(container["command"], cwd=container["workingDir"], env=env,
                                           stdout=log, stderr=subprocess.STDOUT)
        self.reads[key] = 0


@pytest.mark.slow
def test_train_step_runs_the_job_and_passes_its_generator_on(tmp_path, monkeypatch, cli_env, fmnist_small):
    from kfp.dsl import Dataset, Metrics, Model
    from mlflow import MlflowClient
    from train_helpers import small_prepared

    import components.train_job as comp

    data = small_prepared(tmp_path, fmnist_small)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fake = FakeOperator({**cli_env, "MLFLOW_TRACKING_URI": tracking})
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "team"}}],
    }))
    # what `KUBECONFIG=...` does (the kubernetes client reads the variable once, when first imported)
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    volume = tmp_path / "volume"  # the run's ReadWriteMany claim, as mounted in the step and in the job's pods
    job = {"image": "registry.example/productgan:abc", "mount_path": str(volume), "nodes": 1, "nproc_per_node": 2,
           "gpu_type": "nvidia.com/gpu", "gpus_per_node": 0, "cpu": "1", "memory": "1Gi",
           "config_map": "productgan-config", "config_keys": ["MLFLOW_TRACKING_URI"], "secret": None,
           "secret_keys": [], "backoff_limit": 0, "active_deadline_seconds": 600, "timeout_s": 600, "poll_s": 0.2}
    tiny = {"g_channels": 4, "d_channels": 4, "lr_schedule": "constant"}
    params = json.dumps({"train": {"recipe": "default", "steps": 4, "batch_size": 4, "checkpoint_every": 2,
                                   "sync_every": 1, "log_every": 2, "sample_every": 1000, "grid_columns": 2,
                                   "max_minutes": None, **tiny}})
    generator, metrics = Model(uri=str(tmp_path / "generator")), Metrics(uri=str(tmp_path / "metrics"))
    try:
        comp.train(params, "abc.dir", Dataset(uri=str(data)), generator, metrics, job=json.dumps(job),
                   pvc_name="run-checkpoints", run_id=RUN_ID)
    finally:
        server.shutdown()
        server.server_close()
    base = volume / RUN_ID
    master_log = (base / "master-0.log").read_text()
    assert "x 2 process(es)" in master_log, master_log[-3000:]  # torchrun took --nproc_per_node from PET_*
    assert (base / "prepared" / "manifest.json").is_file() and (base / "params.yaml").is_file()
    _, state = load_latest(base / "checkpoints" / "train")
    assert state["step"] == 4
    assert (tmp_path / "generator" / "generator.safetensors").is_file()
    assert generator.metadata["dataset_version"] == "abc.dir"
    run = MlflowClient(tracking).get_run(generator.metadata["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["world_size"] == "2"
    assert [c for c in fake.calls if c[0] == "POST"] == [("POST", job_name(RUN_ID))]
