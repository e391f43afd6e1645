"""The product GAN pipeline (KFP v2): ingest -> retrain-check -> [preprocess -> train -> evaluate -> register].

The steps are the components in ``components/``, each running ``python -m productgan <step>`` in the project
image. The whole params.yaml travels as the ``params`` parameter (default: the file at compile time), so a
Kubeflow run and ``dvc repro`` use the same settings. ``retrain-check`` ends the run early when neither the
dataset version, the code nor the params changed since a model was trained from them.

A first step, ``run-settings``, applies the typed run parameters (recipe, steps, max_minutes, resolution,
eval_n; ``pipelines/run_parameters.py``) to ``params``; every other step reads its result.

Cluster settings sit next to the task they concern: CPU/memory requests on every step, a GPU on train (node
selector and tolerations only if params set them), retries on ingest and register, credentials from
Kubernetes Secrets and endpoints from a ConfigMap as environment variables, every step as a non-root user.
``kfp.local`` ignores those settings (with a warning), so the very same pipeline runs locally
(``productgan pipeline run-local``).
"""

# No `from __future__ import annotations` here: KFP reads the pipeline function's annotations as real types.

import os
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.graph_component import GraphComponent

from components import check, evaluate, ingest, preprocess, register, settings, train, train_job
from components.runtime import STEP_POD_LABELS, parse_params
from pipelines import scaling
from pipelines.run_parameters import params_json, run_parameter_defaults
from pipelines.settings import PipelineParams, Resources, pipeline_params
from productgan.params import params_path

STEP_TASKS = ("ingest", "preprocess", "train", "evaluate", "register")
CHECK_TASK = "retrain-check"
SETTINGS_TASK = "run-settings"
CONDITION_NAME = "retrain"
# ConfigMap keys (infra/k8s) exposed to every step under the same names.
CONFIG_KEYS = ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL")
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MLFLOW_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def default_params_text(path: str | os.PathLike[str] | None = None) -> str:
    """The params file in use (``--params``, ``$PRODUCTGAN_PARAMS`` or ./params.yaml) as text."""
    p = params_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no params file; run from the repository root or pass --params FILE")
    return p.read_text(encoding="utf-8")


def params_argument(params: dict[str, Any]) -> str:
    """The ``params`` pipeline parameter: params.yaml as one-line JSON (see ``run_parameters.params_json``)."""
    return params_json(params)


def _resources(task: PipelineTask, res: Resources) -> PipelineTask:
    return task.set_cpu_request(res.cpu).set_memory_request(res.memory)


def _env_from_cluster(task: PipelineTask, cfg: PipelineParams, secret: str | None, keys: tuple[str, ...]) -> None:
    kubernetes.use_config_map_as_env(task, cfg.config_map, {k: k for k in CONFIG_KEYS})
    if secret:
        kubernetes.use_secret_as_env(task, secret, {k: k for k in keys})


def _gpu(task: PipelineTask, cfg: PipelineParams, count: int) -> PipelineTask:
    """``count`` GPUs for ``task``; node selector and tolerations only where the params set them (off by default:
    the GPU request alone makes the scheduler pick a node that has one)."""
    task.set_accelerator_type(cfg.gpu_type).set_accelerator_limit(count)
    for label, value in cfg.gpu_node_selector.items():
        kubernetes.add_node_selector(task, str(label), str(value))
    for t in cfg.gpu_tolerations:
        kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect,
                                  toleration_seconds=t.toleration_seconds)
    return task


def _secure_every_step(cfg: PipelineParams) -> None:
    """Every task of the pipeline being built carries STEP_POD_LABELS (what lets it through the cluster's
    NetworkPolicies to MLflow and MinIO) and runs as the image's non-root user.

    kfp-kubernetes can set only runAsUser/runAsGroup/runAsNonRoot (``set_security_context``). The rest of
    what the restricted Pod Security Standard asks (seccompProfile RuntimeDefault, allowPrivilegeEscalation
    false, all capabilities dropped) the KFP backend adds to every pod itself from 2.16.0 on
    (backend/src/v2/compiler/argocompiler/security_context.go); older backends ignore the field (their driver
    discards unknown fields) and need the cluster to add it (docs/kubeflow.md, "Pod security")."""
    from kfp.dsl import pipeline_context

    for task in pipeline_context.Pipeline.get_default_pipeline().tasks.values():
        if task.container_spec is None or task.container_spec.image.startswith("argostub/"):
            continue  # CreatePVC/DeletePVC: the backend's driver does their work, no pod of ours runs
        for key, value in STEP_POD_LABELS.items():
            kubernetes.add_pod_label(task, key, value)
        if cfg.run_as_user is not None:
            kubernetes.set_security_context(task, run_as_user=cfg.run_as_user, run_as_group=cfg.run_as_group,
                                            run_as_non_root=True)


def _retries(task: PipelineTask, cfg: PipelineParams) -> PipelineTask:
    # Transient failures (S3 throttling, a restarting MLflow server) are what these two steps meet.
    return task.set_retry(
        num_retries=cfg.retries, backoff_duration=cfg.retry_backoff, backoff_factor=2.0, backoff_max_duration="3600s"
    )


def build_pipeline(params_text: str | None = None, image: str | None = None) -> GraphComponent:
    """The pipeline with ``params_text`` (default: the params file) as the ``params`` default.

    ``image`` overrides ``pipeline.image`` (the image every step runs in; tag it with the git commit)."""
    params = parse_params(default_params_text() if params_text is None else params_text)
    cfg = pipeline_params(params)
    default = params_argument(params)
    image = image or cfg.image
    ingest_op, check_op = ingest.component(image), check.component(image)
    preprocess_op, train_op = preprocess.component(image), train.component(image)
    train_job_op = train_job.component(image)
    preprocess_shard_op, preprocess_merge_op = preprocess.shard_component(image), preprocess.merge_component(image)
    evaluate_op, register_op = evaluate.component(image), register.component(image)
    settings_op = settings.component(image)
    res = cfg.resources
    run = run_parameter_defaults(params)

    def product_gan(
        params: str = default,
        dataset_version: str = "",
        force: bool = False,
        recipe: str = run["recipe"],
        steps: int = run["steps"],
        max_minutes: float = run["max_minutes"],
        resolution: int = run["resolution"],
        eval_n: int = run["eval_n"],
    ):
        # The typed parameters (pipelines/run_parameters.py) on top of `params`: every step reads the result.
        resolved = settings_op(params=params, recipe=recipe, steps=steps, max_minutes=max_minutes,
                               resolution=resolution, eval_n=eval_n)
        _resources(resolved, res.run_settings)
        params = resolved.output

        # ingest looks at the outside world (the source may have changed): never served from the cache.
        ingested = ingest_op(params=params, dataset_version=dataset_version).set_caching_options(False)
        _retries(_resources(ingested, res.ingest), cfg)
        _env_from_cluster(ingested, cfg, cfg.s3_secret, S3_KEYS)
        version = ingested.outputs["dataset_version"]

        # reads the registry's current state: never cached either.
        checked = check_op(params=params, dataset_version=version, force=force).set_caching_options(False)
        _resources(checked, res.retrain_check)
        _env_from_cluster(checked, cfg, cfg.mlflow_secret, MLFLOW_KEYS)

        with dsl.If(checked.outputs["Output"] == True, name=CONDITION_NAME):  # noqa: E712 (a KFP condition)
            # one pod, or preprocess_shards pods and a merge: pipelines/scaling.py
            prepared = scaling.preprocess_step(
                preprocess_op, preprocess_shard_op, preprocess_merge_op, cfg,
                lambda task: _env_from_cluster(_resources(task, res.preprocess), cfg, None, ()),
                params=params, dataset_version=version, data=ingested.outputs["data"],
            )

            # checkpoints on a volume, retries, torchrun or a PyTorchJob: pipelines/scaling.py
            volume = scaling.checkpoint_volume(cfg)
            trained = scaling.train_step(
                train_op, train_job_op, cfg, image, volume, CONFIG_KEYS, MLFLOW_KEYS,
                params=params, dataset_version=version, prepared=prepared.outputs["prepared"],
            )
            _resources(trained, res.train)
            if cfg.train_launcher == "pod":  # a PyTorchJob's pods ask for the GPUs; this step only waits
                _gpu(trained, cfg, cfg.gpus)
            _env_from_cluster(trained, cfg, cfg.mlflow_secret, MLFLOW_KEYS)
            scaling.release_checkpoint_volume(volume, trained)

            evaluated = evaluate_op(
                params=params,
                dataset_version=version,
                generator=trained.outputs["generator"],
                prepared=prepared.outputs["prepared"],
                add_metrics=scaling.evaluate_metrics_added(cfg),
            )
            _resources(evaluated, res.evaluate)
            scaling.mount_stats_cache(evaluated, cfg)  # real statistics: once per dataset version, not per pod
            if cfg.evaluate_gpus > 0:
                _gpu(evaluated, cfg, cfg.evaluate_gpus)
            _env_from_cluster(evaluated, cfg, cfg.mlflow_secret, MLFLOW_KEYS)

            registered = register_op(
                params=params,
                dataset_version=version,
                generator=trained.outputs["generator"],
                evaluation=evaluated.outputs["evaluation"],
                prepared=prepared.outputs["prepared"],
            )
            _retries(_resources(registered, res.register), cfg)
            scaling.mount_stats_cache(registered, cfg)  # re-scoring reads the same statistics
            _env_from_cluster(registered, cfg, cfg.mlflow_secret, MLFLOW_KEYS)

        _secure_every_step(cfg)

    product_gan.__doc__ = (
        "Product photos -> a registered class-conditional GAN. params: params.yaml content; dataset_version: "
        "empty = the source's current data, a DVC hash (….dir) = the version the source must hold; "
        "force: retrain even when nothing changed. recipe, steps, max_minutes (0 = no time budget), resolution, "
        "eval_n: train.recipe, train.steps, train.max_minutes, preprocess.resolution, evaluate.n (win over params)."
    )
    return dsl.pipeline(product_gan, name=cfg.name, description="productgan: ingest, preprocess, train, evaluate, "
                        "register a class-conditional product-image GAN (retrains only on new data, code or params)",
                        pipeline_root=cfg.pipeline_root)


def compile_pipeline(out: str | os.PathLike[str], params_text: str | None = None, image: str | None = None) -> Path:
    """Write the pipeline IR YAML to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(params_text, image), package_path=str(out))
    return out


def pipeline_inputs(pipeline: GraphComponent) -> dict[str, str]:
    """The pipeline's parameters and their IR types (STRING, BOOLEAN, ...)."""
    spec: dict[str, Any] = pipeline.pipeline_spec.root.input_definitions.parameters
    from kfp.pipeline_spec import pipeline_spec_pb2

    kinds = pipeline_spec_pb2.ParameterType.ParameterTypeEnum
    return {name: kinds.Name(p.parameter_type) for name, p in spec.items()}
