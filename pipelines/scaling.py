"""How the pipeline scales (docs/scaling.md), next to the tasks it concerns:

- train keeps its checkpoints on a PersistentVolumeClaim (``CreatePVC`` per run, or an existing claim), is retried
  after an eviction or preemption (``set_retry``) and resumes (``--resume``): an eviction costs at most one
  checkpoint interval. ``checkpoints.pvc: none`` keeps them in a plain folder at ``mount_path`` instead, which is
  what ``kfp.local`` runs use: the same component, the same resume path, no volume. Train's working folder
  (params.yaml, the relative ``checkpoints/train``, metrics/) is ``<mount_path>/[<run id>/]``; the params are
  left as the run gave them, so their hash (lineage, the retrain check) does not depend on where they ran.
- train launches ``torchrun --nproc_per_node=<gpus>`` in its pod (one process per GPU), or, with
  ``train_launcher: pytorchjob``, a Kubeflow PyTorchJob over several nodes (components/pytorchjob.py).
- evaluate asks for a GPU (the Inception metrics then run at 10,000 a side: ``evaluate.fid_n: auto``) and may add
  metrics there (``evaluate_gpu_metrics``).
- evaluate and register mount the statistics cache (``stats_cache``: a claim that outlives runs) and point
  ``PRODUCTGAN_CACHE`` at it: the real statistics and the domain classifier of a dataset version are computed by
  the first run that needs them and read by every later evaluate and register pod.
- preprocess decodes the photo list in ``preprocess_shards`` parallel pods (``dsl.ParallelFor``), then one merge
  step collects their parts (``dsl.Collected``), drops duplicates and splits, as one preprocess does.
"""

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from kfp import dsl, kubernetes
from kfp.dsl import PipelineTask

from pipelines.settings import CHECKPOINT_PVC_CREATE, CHECKPOINT_PVC_NONE, PipelineParams

CACHE_ENV = "PRODUCTGAN_CACHE"  # productgan.metrics.cache.CACHE_ENV (not imported: pipelines stay light)

CHECKPOINT_VOLUME_SUFFIX = "-checkpoints"


@dataclasses.dataclass
class CheckpointVolume:
    """The run's checkpoint claim: its name (a task output, a constant, or None for a plain folder) and the
    CreatePVC task when this run creates it."""

    claim: Any = None
    created: PipelineTask | None = None

    @property
    def per_run(self) -> bool:
        """A fresh volume per run: no run id is needed to keep runs apart (a claim or a folder shared by
        runs gets a ``<run id>/`` folder per run)."""
        return self.created is not None


def checkpoint_volume(cfg: PipelineParams) -> CheckpointVolume:
    store = cfg.checkpoints
    if store.pvc == CHECKPOINT_PVC_NONE:
        return CheckpointVolume()
    if store.pvc == CHECKPOINT_PVC_CREATE:
        created = kubernetes.CreatePVC(
            pvc_name_suffix=CHECKPOINT_VOLUME_SUFFIX,
            access_modes=[store.access_mode],
            size=store.size,
            storage_class_name=store.storage_class,
        ).set_display_name("checkpoint-volume")
        return CheckpointVolume(created.outputs["name"], created)
    return CheckpointVolume(store.pvc)


def pytorchjob_settings(cfg: PipelineParams, image: str, config_keys: tuple[str, ...],
                        secret_keys: tuple[str, ...]) -> dict[str, Any]:
    """The PyTorchJob's settings from params (JobSpec fields less the run's paths and claim, plus timing)."""
    job, res = cfg.pytorchjob, cfg.resources.train
    return {
        "image": image,
        "mount_path": cfg.checkpoints.mount_path,
        "nodes": job.nodes,
        "nproc_per_node": cfg.nproc_per_node,
        "gpu_type": cfg.gpu_type,
        "gpus_per_node": cfg.gpus,
        "cpu": res.cpu,
        "memory": res.memory,
        "config_map": cfg.config_map,
        "config_keys": list(config_keys),
        "secret": cfg.mlflow_secret,
        "secret_keys": list(secret_keys),
        "backoff_limit": job.backoff_limit,
        "active_deadline_seconds": job.timeout_minutes * 60,
        "ttl_seconds_after_finished": job.keep_finished_hours * 3600,
        "timeout_s": job.timeout_minutes * 60,
        "poll_s": job.poll_seconds,
    }


def train_step(train_op: Any, train_job_op: Any, cfg: PipelineParams, image: str, volume: CheckpointVolume,
               config_keys: tuple[str, ...], secret_keys: tuple[str, ...], **inputs: Any) -> PipelineTask:
    """The train task: one pod (``nproc`` processes) or a PyTorchJob, checkpoints on the volume, retried."""
    if cfg.train_launcher == "pytorchjob":
        settings = pytorchjob_settings(cfg, image, config_keys, secret_keys)
        # the job's name must be unique per run: the run id (so this mode never reuses a cached train)
        task = train_job_op(**inputs, job=json.dumps(settings), pvc_name=volume.claim,
                            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    else:
        run_id = "" if volume.per_run else dsl.PIPELINE_JOB_ID_PLACEHOLDER  # shared by runs: a folder per run
        task = train_op(**inputs, checkpoint_root=cfg.checkpoints.mount_path, run_id=run_id,
                        nproc=cfg.nproc_per_node)
    if volume.claim is not None:
        kubernetes.mount_pvc(task, pvc_name=volume.claim, mount_path=cfg.checkpoints.mount_path)
    # an evicted or preempted train (the pod is gone, the volume is not) runs again and resumes
    return task.set_retry(num_retries=cfg.train_retries, backoff_duration=cfg.retry_backoff, backoff_factor=2.0,
                          backoff_max_duration="3600s")


def release_checkpoint_volume(volume: CheckpointVolume, *after: PipelineTask) -> PipelineTask | None:
    """Delete the run's checkpoint PVC once ``after`` succeeded (a failed run keeps it for a look inside)."""
    if volume.created is None:
        return None
    return kubernetes.DeletePVC(pvc_name=volume.claim).after(*after).set_display_name("delete-checkpoint-volume")


def mount_stats_cache(task: PipelineTask, cfg: PipelineParams) -> PipelineTask:
    """The statistics cache volume on ``task`` (evaluate, register) and ``$PRODUCTGAN_CACHE`` pointing at it."""
    store = cfg.stats_cache
    if store.pvc != CHECKPOINT_PVC_NONE:
        kubernetes.mount_pvc(task, pvc_name=store.pvc, mount_path=store.mount_path)
        task.set_env_variable(CACHE_ENV, store.mount_path)
    return task


def evaluate_metrics_added(cfg: PipelineParams) -> str:
    """What evaluate adds to ``evaluate.metrics``: the GPU metrics (the Inception fid) when it has a GPU."""
    return ",".join(cfg.evaluate_gpu_metrics) if cfg.evaluate_gpus > 0 else ""


def preprocess_step(preprocess_op: Any, shard_op: Any, merge_op: Any, cfg: PipelineParams,
                    configure: Callable[[PipelineTask], Any], **inputs: Any) -> PipelineTask:
    """The task whose ``prepared`` output train and evaluate read: one preprocess, or with
    ``preprocess_shards`` > 1 that many shard pods (``dsl.ParallelFor``) and a merge of their parts
    (``dsl.Collected``). ``configure`` sets resources and environment on every task made here."""
    shards = cfg.preprocess_shards
    if shards <= 1:
        task = preprocess_op(**inputs)
        configure(task)
        return task
    with dsl.ParallelFor(items=list(range(shards)), parallelism=shards) as shard:
        part = shard_op(**inputs, shard=shard, shards=shards)
        configure(part)
    merged = merge_op(params=inputs["params"], dataset_version=inputs["dataset_version"],
                      parts=dsl.Collected(part.outputs["part"]))
    configure(merged)
    return merged
