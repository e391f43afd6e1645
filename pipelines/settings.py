"""The ``pipeline`` section of params.yaml as a typed dataclass: every default and check (params.yaml states what
differs)."""

from __future__ import annotations

import dataclasses
from typing import Any

from productgan.params import require, section_of

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
    """Where train keeps its checkpoints so an evicted or preempted train resumes (docs/scaling.md)."""

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
    image: str = "ghcr.io/productgan/productgan:0.1.0"  # infra/docker/Dockerfile; tag it with the commit you deploy
    experiment: str = "product-gan"  # KFP experiment for `productgan submit`
    max_concurrency: int = 1  # recurring runs: at most this many at once (KFP allows 1-10)
    retries: int = 3  # ingest and register (S3 throttling, an MLflow restart)
    retry_backoff: str = "30s"  # first retry after this, then doubling
    gpu_type: str = "nvidia.com/gpu"  # train's accelerator
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
    config_map: str = "productgan-config"  # MLFLOW_TRACKING_URI, AWS_ENDPOINT_URL (infra/k8s)
    s3_secret: str = "productgan-s3"  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (ingest)
    mlflow_secret: str = "productgan-mlflow"  # MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD
    resources: StepResources = dataclasses.field(default_factory=StepResources)  # requests per step
    # --- scaling (docs/scaling.md): eviction-proof training, GPU evaluation, several GPUs and nodes, sharding
    train_retries: int = 3  # an evicted or preempted train is run again and resumes from its last checkpoint
    checkpoints: CheckpointStorage = dataclasses.field(default_factory=CheckpointStorage)
    evaluate_gpus: int = 1  # evaluate's GPUs (gpu_type); 0 = CPU
    # added to evaluate.metrics when evaluate has a GPU (the Inception metrics are on everywhere: evaluate.fid_n
    # auto runs them at 10,000 a side there)
    evaluate_gpu_metrics: list[str] = dataclasses.field(default_factory=list)
    stats_cache: StatsCacheStorage = dataclasses.field(default_factory=StatsCacheStorage)
    # pod: torchrun --nproc_per_node=<gpus> in the train pod | pytorchjob: a Kubeflow PyTorchJob over
    # pytorchjob.nodes pods (Training Operator, kubeflow.org/v1)
    train_launcher: str = "pod"
    pytorchjob: PyTorchJobSettings = dataclasses.field(default_factory=PyTorchJobSettings)
    preprocess_shards: int = 1  # > 1: the photo list is decoded by this many parallel pods, then merged

    def __post_init__(self) -> None:
        require(self.train_launcher in LAUNCHERS, "train_launcher",
                f"use one of {', '.join(LAUNCHERS)}, got {self.train_launcher!r}")
        for key in ("gpus", "evaluate_gpus", "train_retries"):
            require(getattr(self, key) >= 0, key, f"must not be negative, got {getattr(self, key)}")
        require(self.preprocess_shards >= 1, "preprocess_shards", f"must be at least 1, got {self.preprocess_shards}")
        require(self.stats_cache.pvc != CHECKPOINT_PVC_CREATE, "stats_cache.pvc",
                "name an existing claim that outlives the runs (infra/k8s creates productgan-cache) or none; a claim "
                "per run would recompute everything")
        require(self.checkpoints.pvc != CHECKPOINT_PVC_CREATE or bool(self.checkpoints.storage_class),
                "checkpoints.storage_class", "name a StorageClass of the cluster (`kubectl get storageclass`); KFP "
                "creates the claim with exactly this class (none: it never binds)")
        if self.train_launcher == "pytorchjob":
            require(self.pytorchjob.nodes >= 1, "pytorchjob.nodes", f"must be at least 1, got {self.pytorchjob.nodes}")
            require(self.checkpoints.pvc != CHECKPOINT_PVC_NONE, "checkpoints.pvc",
                    "the pytorchjob launcher needs a PVC shared by its pods (create, or the name of a ReadWriteMany "
                    "claim)")
            require(self.checkpoints.pvc != CHECKPOINT_PVC_CREATE or self.checkpoints.access_mode == "ReadWriteMany",
                    "checkpoints.access_mode", "the pytorchjob launcher's pods run on several nodes and share the "
                    "checkpoints: use ReadWriteMany (a StorageClass that offers it, e.g. NFS, CephFS, EFS, Filestore)")

    @property
    def nproc_per_node(self) -> int:
        """Training processes per pod: one per GPU (torchrun --nproc_per_node), one without a GPU."""
        return max(1, self.gpus)


def pipeline_params(params: dict[str, Any], where: str = "params.yaml") -> PipelineParams:
    """The ``pipeline`` section of a whole params mapping over its defaults, typed; unknown keys, wrong types and
    failed checks raise ParamsError."""
    return section_of(params, SECTION, PipelineParams, where)
