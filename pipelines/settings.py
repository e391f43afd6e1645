"""The ``pipeline`` section of params.yaml as a typed dataclass (defaults equal to the shipped file)."""

from __future__ import annotations

import dataclasses
from typing import Any

from productgan.params import from_dict

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


def pipeline_params(params: dict[str, Any], where: str = "params.yaml") -> PipelineParams:
    """The ``pipeline`` section of a whole params mapping, typed; unknown keys raise ParamsError."""
    return from_dict(PipelineParams, dict(params.get(SECTION) or {}), f"{where}:{SECTION}")
