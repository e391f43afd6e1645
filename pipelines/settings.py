"""The ``pipeline`` section of params.yaml as a typed dataclass (defaults equal to the shipped file)."""

from __future__ import annotations

import dataclasses
from typing import Any

from productgan.params import ParamsError, from_dict

SECTION = "pipeline"


@dataclasses.dataclass
class Resources:
    cpu: str = "1"  # Kubernetes quantity, e.g. "500m", "2"
    memory: str = "2Gi"


@dataclasses.dataclass
class StepResources:
    run_settings: Resources = dataclasses.field(default_factory=lambda: Resources("250m", "512Mi"))
    ingest: Resources = dataclasses.field(default_factory=lambda: Resources("1", "2Gi"))
    retrain_check: Resources = dataclasses.field(default_factory=lambda: Resources("500m", "1Gi"))
    preprocess: Resources = dataclasses.field(default_factory=lambda: Resources("2", "4Gi"))
    train: Resources = dataclasses.field(default_factory=lambda: Resources("4", "16Gi"))
    evaluate: Resources = dataclasses.field(default_factory=lambda: Resources("4", "16Gi"))
    register: Resources = dataclasses.field(default_factory=lambda: Resources("1", "2Gi"))


CHECKPOINT_PVC_CREATE, CHECKPOINT_PVC_NONE = "create", "none"
LAUNCHERS = ("pod", "pytorchjob")


@dataclasses.dataclass
class CheckpointStorage:
    """Where train keeps its checkpoints so an evicted or preempted train resumes (README "Scaling out")."""

    pvc: str = CHECKPOINT_PVC_CREATE  # create (a PVC per run) | none (a plain folder: local runs) | NAME (existing)
    size: str = "20Gi"
    storage_class: str = "standard"  # KFP's driver sets it verbatim ("" = no class: the claim never binds)
    access_mode: str = "ReadWriteOnce"  # ReadWriteMany for the pytorchjob launcher (pods on several nodes)
    mount_path: str = "/mnt/productgan/checkpoints"


@dataclasses.dataclass
class StatsCacheStorage:
    """Where evaluate and register keep what they compute once per dataset version (the real images' Inception
    and domain statistics, the domain classifier: productgan.metrics.cache), so a pod does not recompute them."""

    pvc: str = "productgan-cache"  # NAME of an existing claim (infra/k8s/base/stats-cache.yaml) | none (each pod
    #                                 recomputes them)
    mount_path: str = "/mnt/productgan/cache"


@dataclasses.dataclass
class PyTorchJobSettings:
    """train_launcher: pytorchjob — a Kubeflow Training Operator PyTorchJob (kubeflow.org/v1) over several nodes."""

    nodes: int = 2  # pods: 1 Master + nodes-1 Workers, each with `gpus` GPUs and torchrun --nproc_per_node=gpus
    backoff_limit: int = 3  # pod restarts (each resumes from the last checkpoint) before the job fails
    timeout_minutes: int = 2880  # the train step gives up waiting after this long (and deletes the job)
    poll_seconds: int = 30  # how often the train step reads the job's status
    keep_finished_hours: int = 24  # then the operator deletes the finished job and its pods (they hold the volume)


@dataclasses.dataclass
class Toleration:
    """One Kubernetes toleration (``kubectl explain pod.spec.tolerations``)."""

    key: str | None = None  # None with operator Exists: tolerate every taint
    operator: str = "Exists"  # Exists | Equal
    value: str | None = None  # with Equal
    effect: str | None = None  # NoSchedule | PreferNoSchedule | NoExecute; None = every effect
    toleration_seconds: int | None = None  # NoExecute only


@dataclasses.dataclass
class PipelineParams:
    name: str = "product-gan"
    image: str = "ghcr.io/productgan/productgan:0.1.0"
    experiment: str = "product-gan"
    max_concurrency: int = 1
    retries: int = 3
    retry_backoff: str = "30s"
    gpu_type: str = "nvidia.com/gpu"
    gpus: int = 1
    # Off by default: the GPU request alone puts a pod on a GPU node. Clusters that label or taint their GPU
    # nodes (NVIDIA GPU feature discovery: nvidia.com/gpu.present=true) set these.
    gpu_node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    gpu_tolerations: list[Toleration] = dataclasses.field(default_factory=list)
    # Where KFP writes this pipeline's artifacts; None = KFP's default artifact store (the namespace's
    # kfp-launcher ConfigMap, which the cluster admin or Kubeflow's profile controller owns).
    pipeline_root: str | None = None
    # Every step's container runs as this non-root user (the image's USER); None = leave it to the cluster.
    run_as_user: int | None = 10001
    run_as_group: int | None = 10001
    config_map: str = "productgan-config"
    s3_secret: str = "productgan-s3"
    mlflow_secret: str = "productgan-mlflow"
    resources: StepResources = dataclasses.field(default_factory=StepResources)
    # --- scaling (README "Scaling out")
    train_retries: int = 3
    checkpoints: CheckpointStorage = dataclasses.field(default_factory=CheckpointStorage)
    evaluate_gpus: int = 1
    evaluate_gpu_metrics: list[str] = dataclasses.field(default_factory=list)
    stats_cache: StatsCacheStorage = dataclasses.field(default_factory=StatsCacheStorage)
    train_launcher: str = "pod"
    pytorchjob: PyTorchJobSettings = dataclasses.field(default_factory=PyTorchJobSettings)
    preprocess_shards: int = 1

    def __post_init__(self) -> None:
        where = "params.yaml pipeline"
        if self.train_launcher not in LAUNCHERS:
            raise ParamsError(f"{where}.train_launcher: use one of {', '.join(LAUNCHERS)}, got {self.train_launcher!r}")
        if self.gpus < 0 or self.evaluate_gpus < 0 or self.train_retries < 0:
            raise ParamsError(f"{where}: gpus, evaluate_gpus and train_retries must not be negative")
        if self.preprocess_shards < 1:
            raise ParamsError(f"{where}.preprocess_shards: must be at least 1, got {self.preprocess_shards}")
        if self.stats_cache.pvc == CHECKPOINT_PVC_CREATE:
            raise ParamsError(f"{where}.stats_cache.pvc: name an existing claim that outlives the runs (infra/k8s "
                              "creates productgan-cache) or none; a claim per run would recompute everything")
        if self.checkpoints.pvc == CHECKPOINT_PVC_CREATE and not self.checkpoints.storage_class:
            raise ParamsError(f"{where}.checkpoints.storage_class: name a StorageClass of the cluster (`kubectl get "
                              "storageclass`); KFP creates the claim with exactly this class (none: it never binds)")
        if self.train_launcher == "pytorchjob":
            if self.pytorchjob.nodes < 1:
                raise ParamsError(f"{where}.pytorchjob.nodes: must be at least 1, got {self.pytorchjob.nodes}")
            if self.checkpoints.pvc == CHECKPOINT_PVC_NONE:
                raise ParamsError(f"{where}.checkpoints.pvc: the pytorchjob launcher needs a PVC shared by its pods "
                                  "(create, or the name of a ReadWriteMany claim)")
            if self.checkpoints.pvc == CHECKPOINT_PVC_CREATE and self.checkpoints.access_mode != "ReadWriteMany":
                raise ParamsError(f"{where}.checkpoints.access_mode: the pytorchjob launcher's pods run on several "
                                  "nodes and share the checkpoints: use ReadWriteMany (a StorageClass that offers it, "
                                  "e.g. NFS, CephFS, EFS, Filestore)")

    @property
    def nproc_per_node(self) -> int:
        """Training processes per pod: one per GPU (torchrun --nproc_per_node), one without a GPU."""
        return max(1, self.gpus)


def pipeline_params(params: dict[str, Any], where: str = "params.yaml") -> PipelineParams:
    """The ``pipeline`` section of a whole params mapping, typed; unknown keys raise ParamsError."""
    return from_dict(PipelineParams, dict(params.get(SECTION) or {}), f"{where}:{SECTION}")
