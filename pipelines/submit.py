"""Start runs and recurring runs (scheduled retraining) on a Kubeflow Pipelines server; wait for a run; pause,
resume and delete recurring runs.

The compiled pipeline is uploaded as a version of the pipeline ``pipeline.name`` (the Pipelines page lists
it; a version named by the hash of its spec is reused when the same spec comes again), and runs start from
that version. Runs pass the full ``params`` and every typed run parameter explicitly, so a run's page and run
comparison show exactly which settings trained its model.

REST calls (kfp.Client, all under /apis/v2beta1/): pipelines (list by name, create), pipelines/upload_version,
pipelines/{id}/versions (list by name), experiments, runs, runs/{id} (--wait), recurringruns (create, list,
:enable, :disable, delete). tests/test_submit.py runs them against a fake server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from components.runtime import parse_params
from pipelines.cron import to_kfp_cron
from pipelines.overrides import apply_overrides, split_params
from pipelines.run_parameters import run_parameter_defaults
from pipelines.settings import pipeline_params
from productgan.lineage import model_params_hash

MAX_CONCURRENCY = (1, 10)  # what the KFP API accepts
# V2beta1 RuntimeState values after which a run no longer changes (backend/api/v2beta1/run.proto). kfp's own
# Client.wait_for_run_completion does not count CANCELED as finished, so it would wait until its timeout.
FINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")
POLL_SECONDS = 10.0


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
    # every typed run parameter explicitly (run comparison shows what the run used); --param NAME=VALUE wins
    return Prepared(build_pipeline(text, image), {"params": text, **run_parameter_defaults(params), **arguments},
                    params)


def credential(path: str | None, env: str, what: str) -> str | None:
    """A secret for the KFP API (a bearer token, a Dex/oauth2-proxy session cookie): the first line of ``path``,
    else ``$env``; never a command-line argument, which every user of the machine can read (``ps``)."""
    if path:
        with open(path, encoding="utf-8") as fh:
            value = fh.readline().strip()
        if not value:
            raise SubmitError(f"{path}: empty; write {what} on its first line")
        return value
    return os.environ.get(env, "").strip() or None


def client(
    host: str,
    namespace: str | None = None,
    token: str | None = None,
    cookie: str | None = None,
    ca_cert: str | None = None,
) -> Any:
    """A KFP client. Auth: ``token`` if given; else, inside a pod, the projected service-account token at
    ``$KF_PIPELINES_SA_TOKEN_PATH`` (multi-user Kubeflow; the CronJob mounts one); else none (standalone KFP).
    ``cookie``: the session cookie of a Dex/oauth2-proxy login (``authservice_session=...`` or
    ``oauth2_proxy_kubeflow=...``), sent with every request. ``ca_cert``: a PEM bundle that signs the
    endpoint's TLS certificate (a private CA)."""
    import warnings

    import kfp
    import urllib3

    kwargs: dict[str, Any] = {"host": host, "cookies": cookie or None, "ssl_ca_cert": ca_cert or None}
    if namespace:
        kwargs["namespace"] = namespace
    token_path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", "")
    if token:
        kwargs["existing_token"] = token
    elif token_path and os.path.isfile(token_path):
        kwargs["credentials"] = kfp.client.ServiceAccountTokenVolumeCredentials(token_path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="This client only works with", category=FutureWarning)
            return kfp.Client(**kwargs)
    except urllib3.exceptions.HTTPError as exc:  # connection refused, TLS verification, ...
        hint = " (a private CA: --ca-cert FILE)" if "CERTIFICATE" in str(exc).upper() else ""
        raise SubmitError(f"KFP API {host}: cannot connect: {getattr(exc, 'reason', exc)}{hint}") from exc


def _compiled(pipeline: Any, tmp: str) -> str:
    from kfp import compiler

    path = os.path.join(tmp, "pipeline.yaml")
    compiler.Compiler().compile(pipeline, package_path=path)
    return path


@dataclasses.dataclass(frozen=True)
class PipelineVersion:
    pipeline_id: str
    version_id: str
    name: str
    uploaded: bool  # False: an identical spec was uploaded before and is reused


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def upload_version(kfp_client: Any, prepared: Prepared, namespace: str | None = None) -> PipelineVersion:
    """The pipeline ``pipeline.name`` (created when missing) and a version of it holding exactly this compiled
    spec, named ``<name>-<sha256 of the spec, 12 hex>``: uploaded when new, reused when the same spec exists."""
    import kfp_server_api

    cfg = pipeline_params(prepared.params)
    with tempfile.TemporaryDirectory() as tmp:
        path = _compiled(prepared.pipeline, tmp)
        version_name = f"{cfg.name}-{hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]}"
        found = kfp_client.list_pipelines(page_size=100, filter=_name_filter(cfg.name), namespace=namespace)
        matches = [p for p in (found.pipelines or []) if p.display_name == cfg.name]
        if matches:
            pipeline_id = matches[0].pipeline_id
        else:
            created = kfp_client.pipelines.pipeline_service_create_pipeline(
                pipeline=kfp_server_api.V2beta1Pipeline(
                    display_name=cfg.name, namespace=namespace,
                    description="productgan: product photos -> a registered class-conditional GAN"))
            pipeline_id = created.pipeline_id
        versions = kfp_client.list_pipeline_versions(pipeline_id, page_size=100, filter=_name_filter(version_name))
        same = [v for v in (versions.pipeline_versions or []) if v.display_name == version_name]
        if same:
            return PipelineVersion(pipeline_id, same[0].pipeline_version_id, version_name, uploaded=False)
        description = f"image {cfg.image}; model params hash {model_params_hash(prepared.params)}"
        version = kfp_client.upload_pipeline_version(path, pipeline_version_name=version_name,
                                                     pipeline_id=pipeline_id, description=description)
    return PipelineVersion(pipeline_id, version.pipeline_version_id, version_name, uploaded=True)


def submit_run(
    kfp_client: Any,
    prepared: Prepared,
    experiment: str,
    run_name: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
) -> str:
    """Start one run of the uploaded pipeline version; returns its id."""
    cfg = pipeline_params(prepared.params)
    version = upload_version(kfp_client, prepared, namespace)
    experiment_id = kfp_client.create_experiment(experiment, namespace=namespace).experiment_id
    name = run_name or f"{cfg.name} {datetime.datetime.now():%Y-%m-%d %H-%M-%S}"
    result = kfp_client.run_pipeline(
        experiment_id, name, params=prepared.arguments, pipeline_id=version.pipeline_id,
        version_id=version.version_id, pipeline_root=cfg.pipeline_root, service_account=service_account,
    )
    return str(result.run_id)


def wait_for_run(
    kfp_client: Any, run_id: str, timeout_s: float, on_state: Callable[[str], None] | None = None
) -> Any:
    """Poll the run until it reaches a final state; returns the run. Raises SubmitError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        run = kfp_client.get_run(run_id)
        state = str(run.state or "PENDING")
        if state != last and on_state:
            on_state(state)
        last = state
        if state in FINAL_STATES:
            return run
        if time.monotonic() >= deadline:
            raise SubmitError(f"run {run_id}: still {state} after {timeout_s:g} s; it goes on in KFP (see its page)")
        time.sleep(POLL_SECONDS)


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
    version = upload_version(kfp_client, prepared, namespace)
    experiment_id = kfp_client.create_experiment(experiment, namespace=namespace).experiment_id
    job = kfp_client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name,
        description=f"productgan scheduled retraining ({cron6}); ends early when nothing changed",
        cron_expression=cron6,
        max_concurrency=max_concurrency,
        no_catchup=not catchup,
        params=prepared.arguments,
        pipeline_id=version.pipeline_id,
        version_id=version.version_id,
        enabled=True,
        pipeline_root=pipeline_params(prepared.params).pipeline_root,
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


def delete_recurring_run(kfp_client: Any, name_or_id: str, namespace: str | None = None) -> str:
    """Delete a recurring run (its past runs stay); returns its id."""
    rid = resolve_recurring_run(kfp_client, name_or_id, namespace)
    kfp_client.delete_recurring_run(rid)
    return rid


def set_enabled(kfp_client: Any, name_or_id: str, enabled: bool, namespace: str | None = None) -> str:
    """Resume (enabled=True) or pause a recurring run; returns its id."""
    rid = resolve_recurring_run(kfp_client, name_or_id, namespace)
    if enabled:
        kfp_client.enable_recurring_run(rid)
    else:
        kfp_client.disable_recurring_run(rid)
    return rid
