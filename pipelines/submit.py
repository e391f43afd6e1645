"""Start runs and recurring runs (scheduled retraining) on a Kubeflow Pipelines server; pause and resume them.

Runs carry the compiled pipeline spec inline (no pipeline upload needed) and always pass the full ``params``
they use, so a run's page shows exactly which settings trained its model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from components.runtime import parse_params
from pipelines.cron import to_kfp_cron
from pipelines.overrides import apply_overrides, split_params
from pipelines.settings import pipeline_params

MAX_CONCURRENCY = (1, 10)  # what the KFP API accepts


class SubmitError(RuntimeError):
    pass


@dataclasses.dataclass
class Prepared:
    pipeline: Any  # kfp GraphComponent
    arguments: dict[str, Any]
    params: dict[str, Any]


def prepare(params_text: str, assignments: Sequence[str] = (), image: str | None = None) -> Prepared:
    """The pipeline (with ``section.key=value`` overrides applied to params) and the run arguments."""
    from pipelines.product_gan import build_pipeline, params_argument, pipeline_inputs

    inputs = pipeline_inputs(build_pipeline(params_text, image))
    overrides, arguments = split_params(assignments, inputs)
    params = apply_overrides(parse_params(params_text), overrides)
    pipeline_params(params)  # typed check of the pipeline section before anything reaches the server
    text = params_argument(params)
    return Prepared(build_pipeline(text, image), {"params": text, **arguments}, params)


def client(host: str, namespace: str | None = None, token: str | None = None) -> Any:
    """A KFP client. Auth: ``token`` if given; else, inside a pod, the projected service-account token at
    ``$KF_PIPELINES_SA_TOKEN_PATH`` (multi-user Kubeflow; the CronJob mounts one); else none (standalone KFP)."""
    import warnings

    import kfp

    kwargs: dict[str, Any] = {"host": host}
    if namespace:
        kwargs["namespace"] = namespace
    token_path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", "")
    if token:
        kwargs["existing_token"] = token
    elif token_path and os.path.isfile(token_path):
        kwargs["credentials"] = kfp.client.ServiceAccountTokenVolumeCredentials(token_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This client only works with", category=FutureWarning)
        return kfp.Client(**kwargs)


def _compiled(pipeline: Any, tmp: str) -> str:
    from kfp import compiler

    path = os.path.join(tmp, "pipeline.yaml")
    compiler.Compiler().compile(pipeline, package_path=path)
    return path


def submit_run(
    kfp_client: Any,
    prepared: Prepared,
    experiment: str,
    run_name: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
) -> str:
    """Start one run; returns its id."""
    with tempfile.TemporaryDirectory() as tmp:
        result = kfp_client.create_run_from_pipeline_package(
            _compiled(prepared.pipeline, tmp),
            arguments=prepared.arguments,
            run_name=run_name,
            experiment_name=experiment,
            namespace=namespace,
            service_account=service_account,
        )
    return str(result.run_id)


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def find_recurring_runs(kfp_client: Any, name: str, namespace: str | None = None) -> list[Any]:
    response = kfp_client.list_recurring_runs(page_size=100, namespace=namespace, filter=_name_filter(name))
    return [r for r in (response.recurring_runs or []) if r.display_name == name]


def schedule(
    kfp_client: Any,
    prepared: Prepared,
    experiment: str,
    name: str,
    cron: str,
    max_concurrency: int,
    catchup: bool = False,
    namespace: str | None = None,
    service_account: str | None = None,
) -> str:
    """Create a recurring run (enabled); returns its id. Refuses a second recurring run of the same name."""
    cron6 = to_kfp_cron(cron)
    low, high = MAX_CONCURRENCY
    if not low <= max_concurrency <= high:
        raise SubmitError(f"--max-concurrency {max_concurrency}: KFP accepts {low}-{high}")
    existing = find_recurring_runs(kfp_client, name, namespace)
    if existing:
        ids = ", ".join(r.recurring_run_id for r in existing)
        raise SubmitError(
            f"a recurring run named {name!r} already exists ({ids}); pause/resume it with "
            f"`productgan submit --host ... --pause {name}` / `--resume {name}`, delete it in the KFP UI, "
            "or choose another --name"
        )
    experiment_id = kfp_client.create_experiment(experiment, namespace=namespace).experiment_id
    with tempfile.TemporaryDirectory() as tmp:
        job = kfp_client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=name,
            description=f"productgan scheduled retraining ({cron6}); ends early when nothing changed",
            cron_expression=cron6,
            max_concurrency=max_concurrency,
            no_catchup=not catchup,
            params=prepared.arguments,
            pipeline_package_path=_compiled(prepared.pipeline, tmp),
            enabled=True,
            service_account=service_account,
        )
    return str(job.recurring_run_id)


def resolve_recurring_run(kfp_client: Any, name_or_id: str, namespace: str | None = None) -> str:
    """The id of the recurring run with this display name, or ``name_or_id`` itself if it is an id."""
    matches = find_recurring_runs(kfp_client, name_or_id, namespace)
    if len(matches) > 1:
        ids = ", ".join(r.recurring_run_id for r in matches)
        raise SubmitError(f"several recurring runs are named {name_or_id!r} ({ids}); pass the id instead")
    if matches:
        return str(matches[0].recurring_run_id)
    import kfp_server_api

    try:
        return str(kfp_client.get_recurring_run(name_or_id).recurring_run_id)
    except kfp_server_api.ApiException as exc:
        if exc.status in (400, 404):
            raise SubmitError(f"no recurring run is named or has id {name_or_id!r}") from exc
        raise


def set_enabled(kfp_client: Any, name_or_id: str, enabled: bool, namespace: str | None = None) -> str:
    """Resume (enabled=True) or pause a recurring run; returns its id."""
    rid = resolve_recurring_run(kfp_client, name_or_id, namespace)
    if enabled:
        kfp_client.enable_recurring_run(rid)
    else:
        kfp_client.disable_recurring_run(rid)
    return rid
