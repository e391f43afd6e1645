"""Training over several nodes: the train step as a Kubeflow ``PyTorchJob`` (Training Operator, kubeflow.org/v1).

The KFP train step (with ``pipeline.train_launcher: pytorchjob``) does not train itself: it puts the prepared data
and the run's params on the run's shared checkpoint volume (a ReadWriteMany PVC), creates a PyTorchJob of
``pytorchjob.nodes`` pods (1 Master + Workers, each with ``gpus`` GPUs) running the same image and the same
``productgan train --resume`` under torchrun, waits for it, and hands the generator the Master wrote on the volume
on as its output. The Training Operator sets ``PET_NNODES``, ``PET_NODE_RANK``, ``PET_NPROC_PER_NODE``,
``PET_MASTER_ADDR`` and ``PET_MASTER_PORT`` in every pod, which torchrun reads as its defaults. A pod that is
evicted restarts (``backoff_limit``) and resumes from the last checkpoint, as a retried single-pod train does.

Objects come from the Kubeflow Training SDK (``kubeflow-training``: models and ``TrainingClient``), so the
manifest has the operator's own field names; tests validate it against the CRD's OpenAPI schema and run the
create/wait logic against a fake Kubernetes API.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from components.runtime import STEP_POD_LABELS

KIND = "PyTorchJob"
API_VERSION = "kubeflow.org/v1"
CONTAINER = "pytorch"  # the container name the Training Operator looks for
MASTER, WORKER = "Master", "Worker"
SUCCEEDED, FAILED = "Succeeded", "Failed"
MAX_ATTEMPTS = 10  # job names <run>-train, <run>-train-r1, ...: a failed job is kept for its logs


class JobFailed(RuntimeError):
    """The PyTorchJob ended Failed (or never finished in time); the message names it and how to look at it."""


@dataclasses.dataclass
class JobSpec:
    """Everything a train PyTorchJob is rendered from (params.yaml's ``pipeline`` section and the run)."""

    name: str
    image: str
    pvc_name: str
    mount_path: str
    work_dir: str  # on the volume: params.yaml and data.dvc of the run; metrics/ and plots/ land here
    data_dir: str  # on the volume: the prepared arrays
    out_dir: str  # on the volume: the generator folder the Master writes
    namespace: str | None = None
    nodes: int = 2
    nproc_per_node: int = 1
    gpu_type: str = "nvidia.com/gpu"
    gpus_per_node: int = 1
    cpu: str = "4"
    memory: str = "16Gi"
    config_map: str | None = None
    config_keys: Sequence[str] = ()
    secret: str | None = None
    secret_keys: Sequence[str] = ()
    backoff_limit: int = 3
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    python: str = dataclasses.field(default_factory=lambda: sys.executable)


def job_name(run_id: str, attempt: int = 0) -> str:
    """A DNS-1123 name for the run's train job (pods are named ``<name>-master-0``, so it stays short)."""
    stem = re.sub(r"[^a-z0-9-]+", "-", (run_id or "run").lower()).strip("-")[:36].strip("-") or "run"
    return f"productgan-{stem}-train" + (f"-r{attempt}" if attempt else "")


def train_command(spec: JobSpec) -> list[str]:
    """torchrun takes --nnodes, --node_rank, --nproc_per_node and the master from the operator's PET_* variables."""
    return [spec.python, "-m", "torch.distributed.run", "-m", "productgan", "train",
            "--data", spec.data_dir, "--out", spec.out_dir, "--resume"]


def render_pytorchjob(spec: JobSpec) -> Any:
    """The PyTorchJob (a ``KubeflowOrgV1PyTorchJob``) for ``spec``."""
    from kubeflow.training import models as kf
    from kubernetes import client as k8s

    env = [k8s.V1EnvVar(name="PRODUCTGAN_PARAMS", value=f"{spec.work_dir}/params.yaml")]
    env += [k8s.V1EnvVar(name=key, value_from=k8s.V1EnvVarSource(
        config_map_key_ref=k8s.V1ConfigMapKeySelector(name=spec.config_map, key=key)))
        for key in spec.config_keys if spec.config_map]
    env += [k8s.V1EnvVar(name=key, value_from=k8s.V1EnvVarSource(
        secret_key_ref=k8s.V1SecretKeySelector(name=spec.secret, key=key, optional=True)))
        for key in spec.secret_keys if spec.secret]
    limits = {spec.gpu_type: str(spec.gpus_per_node)} if spec.gpus_per_node > 0 else None
    container = k8s.V1Container(
        name=CONTAINER,
        image=spec.image,
        command=train_command(spec),
        working_dir=spec.work_dir,
        env=env,
        resources=k8s.V1ResourceRequirements(requests={"cpu": spec.cpu, "memory": spec.memory}, limits=limits),
        volume_mounts=[k8s.V1VolumeMount(name="checkpoints", mount_path=spec.mount_path),
                       k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm")],
    )
    pod = k8s.V1PodTemplateSpec(
        # no Istio sidecar: it would keep a finished pod running, and NCCL's ports are not HTTP
        metadata=k8s.V1ObjectMeta(annotations={"sidecar.istio.io/inject": "false"}, labels=dict(STEP_POD_LABELS)),
        spec=k8s.V1PodSpec(
            containers=[container],
            volumes=[
                k8s.V1Volume(name="checkpoints",
                             persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=spec.pvc_name)),
                # NCCL and DataLoader workers use shared memory; a container's default /dev/shm is 64 MiB
                k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory")),
            ],
        ),
    )
    replicas = {MASTER: kf.KubeflowOrgV1ReplicaSpec(replicas=1, restart_policy="OnFailure", template=pod)}
    if spec.nodes > 1:
        replicas[WORKER] = kf.KubeflowOrgV1ReplicaSpec(
            replicas=spec.nodes - 1, restart_policy="OnFailure", template=pod)
    return kf.KubeflowOrgV1PyTorchJob(
        api_version=API_VERSION,
        kind=KIND,
        metadata=k8s.V1ObjectMeta(name=spec.name, namespace=spec.namespace,
                                  labels={"app.kubernetes.io/part-of": "productgan", "productgan/step": "train"}),
        spec=kf.KubeflowOrgV1PyTorchJobSpec(
            nproc_per_node=str(spec.nproc_per_node),
            pytorch_replica_specs=replicas,
            run_policy=kf.KubeflowOrgV1RunPolicy(
                backoff_limit=spec.backoff_limit,
                clean_pod_policy="None",  # keep finished pods: their logs are the training log ...
                ttl_seconds_after_finished=spec.ttl_seconds_after_finished,  # ... for this long
                active_deadline_seconds=spec.active_deadline_seconds,
            ),
        ),
    )


def manifest(job: Any) -> dict[str, Any]:
    """The job as the JSON the API server receives."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(job)


def _conditions(job: Any) -> list[Any]:
    return list((job.status.conditions if job and job.status else None) or [])


def _has(job: Any, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in _conditions(job))


def _failure(job: Any, namespace: str) -> str:
    name = job.metadata.name
    failed = [c for c in _conditions(job) if c.type == FAILED] or _conditions(job)[-1:]
    why = "; ".join(f"{c.reason or c.type}: {c.message or ''}".strip() for c in failed) or "no condition message"
    return (f"train: PyTorchJob {namespace}/{name} failed ({why}). Its pods' logs: `kubectl -n {namespace} logs "
            f"{name}-master-0` (and -worker-N); `kubectl -n {namespace} describe pytorchjob {name}`. Checkpoints "
            "stay on the run's volume: retrying the train step starts a new job that resumes from them.")


def submit_or_reuse(client: Any, spec: JobSpec, run_id: str, log: Callable[[str], Any] = print) -> Any:
    """Create the run's job, or find the one a previous attempt of this step created and is still running.
    A Failed job is left as it is (its pods' logs) and the next name (``-r1``, ``-r2``...) is created."""
    namespace = spec.namespace or client.namespace
    for attempt in range(MAX_ATTEMPTS):
        name = job_name(run_id, attempt)
        try:
            existing = client.get_job(name, namespace=namespace, job_kind=KIND)
        except RuntimeError as exc:
            if "404" not in str(exc) and "Not Found" not in str(exc):
                raise
            existing = None
        if existing is not None and not _has(existing, FAILED):
            log(f"train: PyTorchJob {namespace}/{name} exists (an earlier attempt of this step); waiting for it")
            return existing
        if existing is None:
            job = render_pytorchjob(dataclasses.replace(spec, name=name, namespace=namespace))
            client.create_job(job=job, namespace=namespace)  # the kind is the job object's own
            log(f"train: created PyTorchJob {namespace}/{name}: {spec.nodes} pod(s) x {spec.nproc_per_node} "
                f"process(es), image {spec.image}")
            return job
    raise JobFailed(f"train: {MAX_ATTEMPTS} PyTorchJobs of run {run_id} failed; see `kubectl -n {namespace} get "
                    f"pytorchjobs -l productgan/step=train`")


def wait_for(client: Any, name: str, namespace: str, timeout_s: float, poll_s: float,
             log: Callable[[str], Any] = print) -> Any:
    """Poll the job until Succeeded (returned) or Failed (JobFailed with the operator's reason and message)."""
    seen: list[str] = []

    def report(job: Any) -> None:
        last = _conditions(job)[-1:] or [None]
        state = last[0].type if last[0] is not None else "Pending"
        if not seen or seen[-1] != state:
            seen.append(state)
            log(f"train: PyTorchJob {namespace}/{name}: {state}")

    try:
        return client.wait_for_job_conditions(
            name, namespace=namespace, job_kind=KIND, expected_conditions={SUCCEEDED},
            wait_timeout=timeout_s, polling_interval=poll_s, callback=report,
        )
    except TimeoutError as exc:
        client.delete_job(name, namespace=namespace, job_kind=KIND)  # its GPUs would otherwise stay taken
        raise JobFailed(f"train: PyTorchJob {namespace}/{name} did not finish within {timeout_s / 60:g} minutes "
                        "(pipeline.pytorchjob.timeout_minutes) and was deleted; its checkpoints stay on the run's "
                        "volume, so retrying the train step resumes from them") from exc
    except RuntimeError as exc:
        job = client.get_job(name, namespace=namespace, job_kind=KIND)
        if _has(job, FAILED):
            raise JobFailed(_failure(job, namespace)) from exc
        raise


def run_pytorchjob(client: Any, spec: JobSpec, run_id: str, timeout_s: float, poll_s: float,
                   log: Callable[[str], Any] = print) -> Any:
    """Create (or find) the run's train job and wait until it succeeds; returns the finished job."""
    job = submit_or_reuse(client, spec, run_id, log)
    return wait_for(client, job.metadata.name, job.metadata.namespace or spec.namespace or client.namespace,
                    timeout_s, poll_s, log)
