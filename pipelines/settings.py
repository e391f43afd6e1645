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
    ingest: Resources = dataclasses.field(default_factory=lambda: Resources("1", "2Gi"))
    retrain_check: Resources = dataclasses.field(default_factory=lambda: Resources("500m", "1Gi"))
    preprocess: Resources = dataclasses.field(default_factory=lambda: Resources("2", "4Gi"))
    train: Resources = dataclasses.field(default_factory=lambda: Resources("4", "16Gi"))
    evaluate: Resources = dataclasses.field(default_factory=lambda: Resources("4", "16Gi"))
    register: Resources = dataclasses.field(default_factory=lambda: Resources("1", "2Gi"))


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
    gpu_node_label: str = "nvidia.com/gpu.present"
    gpu_node_value: str = "true"
    gpu_taint: str = "nvidia.com/gpu"
    config_map: str = "productgan-config"
    s3_secret: str = "productgan-s3"
    mlflow_secret: str = "productgan-mlflow"
    resources: StepResources = dataclasses.field(default_factory=StepResources)


def pipeline_params(params: dict[str, Any], where: str = "params.yaml") -> PipelineParams:
    """The ``pipeline`` section of a whole params mapping, typed; unknown keys raise ParamsError."""
    return from_dict(PipelineParams, dict(params.get(SECTION) or {}), f"{where}:{SECTION}")
