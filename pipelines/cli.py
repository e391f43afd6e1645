"""`productgan pipeline compile|run-local` and `productgan submit`: the Kubeflow pipeline from the command line.

These commands live with the pipeline, not in the core library: pyproject.toml registers them in the entry-point
group ``productgan.commands``, which `productgan`'s command line lists (productgan/cli.py). They need the
``kubeflow`` extra (kfp, kfp-kubernetes), imported only when a command runs.
"""

from __future__ import annotations

import importlib.util

import click

_PARAM_HELP = (
    "SECTION.KEY=VALUE overrides params.yaml (e.g. train.steps=200); NAME=VALUE sets a pipeline parameter "
    "(dataset_version, force). Repeatable."
)


def _fail(exc: Exception) -> click.ClickException:
    from productgan.redact import redact

    return click.ClickException(redact(exc))


def _require_kfp(command: str) -> None:
    if importlib.util.find_spec("kfp") is None:
        raise click.ClickException(
            f"{command} needs the Kubeflow Pipelines SDK, which is not installed: pip install 'productgan[kubeflow]'"
        )


@click.group()
@click.pass_context
def pipeline(ctx: click.Context) -> None:
    """The Kubeflow pipeline: ingest -> retrain-check -> preprocess -> train -> evaluate -> register."""
    if not ctx.resilient_parsing:
        _require_kfp("productgan pipeline")


@pipeline.command("compile")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Pipeline IR YAML to write.")
@click.option("--image", default=None, help="Image every step runs in (default: params pipeline.image).")
@click.option("--param", "assignments", multiple=True, metavar="KEY=VALUE", help="SECTION.KEY=VALUE override "
              "of params.yaml baked into the `params` default (e.g. train.steps=200). Repeatable.")
def compile_(out: str, image: str | None, assignments: tuple[str, ...]) -> None:
    """Write the pipeline IR YAML (upload it in the KFP UI, or use `productgan submit`)."""
    from components.runtime import parse_params
    from pipelines.overrides import OverrideError, apply_overrides, parse_assignment, yaml_value
    from pipelines.product_gan import compile_pipeline, default_params_text, params_argument
    from productgan.params import ParamsError

    try:
        text = default_params_text()
        if assignments:
            pairs = [parse_assignment(a) for a in assignments]
            plain = [k for k, _ in pairs if "." not in k]
            if plain:
                raise OverrideError(f"--param {plain[0]}: compile takes SECTION.KEY=VALUE (params.yaml) overrides")
            params = apply_overrides(parse_params(text), [(k, yaml_value(k, v)) for k, v in pairs])
            text = params_argument(params)
        path = compile_pipeline(out, text, image)
    except (OverrideError, ParamsError, FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from exc
    click.echo(f"pipeline: wrote {path}")


@pipeline.command("run-local")
@click.option("--source", default=None, help="What ingest reads (default: a small photo folder cut from the real "
              "Fashion-MNIST, --per-category images per category).")
@click.option("--workdir", default="runs/kfp-local", show_default=True, type=click.Path(file_okay=False),
              help="Artifacts (pipeline_root/), the tiny source and mlflow.db (unless MLFLOW_TRACKING_URI is set).")
@click.option("--per-category", default=30, show_default=True, type=click.IntRange(1, 6000))
@click.option("--full", is_flag=True, help="Use params.yaml as is instead of the tiny configuration.")
@click.option("--param", "assignments", multiple=True, metavar="KEY=VALUE", help=_PARAM_HELP)
@click.option("--runner", type=click.Choice(["subprocess", "docker"]), default="subprocess", show_default=True,
              help="docker: every step in a container of --image (podman or Docker; MLflow must be a server: "
              "MLFLOW_TRACKING_URI=http://..., or unset to start one for the run).")
@click.option("--image", default=None, help="--runner docker: the image (default: params pipeline.image), "
              "e.g. the tag `make image TORCH=cpu` prints.")
def run_local(source: str | None, workdir: str, per_category: int, full: bool, assignments: tuple[str, ...],
              runner: str, image: str | None) -> None:
    """Run the whole pipeline here with kfp.local (tiny configuration by default; CI runs it).

    Run it twice: the second run finds nothing new and ends after retrain-check."""
    from pipelines.local import run_local as _run_local
    from pipelines.overrides import OverrideError
    from pipelines.product_gan import default_params_text
    from productgan.params import ParamsError
    from productgan.redact import redact

    try:
        result = _run_local(workdir, default_params_text(), source, assignments, tiny=not full,
                            per_category=per_category, runner=runner, image=image)
    except (OverrideError, ParamsError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    except RuntimeError as exc:  # kfp.local: "Task ... finished with status FAILURE"; the task log is above
        raise click.ClickException(f"pipeline run-local: {exc}") from exc
    verdict = "trained, evaluated and registered" if result.retrained else "ended early: nothing new"
    click.echo(f"pipeline run-local: {verdict}")
    click.echo(f"  artifacts: {result.run_dir}")
    click.echo(redact(f"  MLflow:    {result.tracking_uri}  ({result.ui_command})"))  # the URI may hold a password


@click.command()
@click.option("--host", required=True, envvar="KF_PIPELINES_ENDPOINT",
              help="KFP API endpoint, e.g. http://localhost:8080 (kubectl port-forward svc/ml-pipeline-ui).")
@click.option("--experiment", default=None, help="KFP experiment (default: params pipeline.experiment).")
@click.option("--param", "assignments", multiple=True, metavar="KEY=VALUE", help=_PARAM_HELP)
@click.option("--image", default=None, help="Image every step runs in (default: params pipeline.image).")
@click.option("--run-name", default=None, help="Display name of a one-off run.")
@click.option("--schedule", "cron", default=None, metavar="CRON",
              help="Create a recurring run instead: 5-field cron ('0 3 * * 1' = Mondays 03:00) or KFP's 6 fields.")
@click.option("--name", default=None, help="Recurring run name (default: '<pipeline name> retraining').")
@click.option("--max-concurrency", type=int, default=None,
              help="Recurring run: at most this many runs at once, 1-10 (default: params pipeline.max_concurrency).")
@click.option("--catchup/--no-catchup", default=False, show_default=True,
              help="Recurring run: backfill intervals missed while paused.")
@click.option("--pause", "pause", default=None, metavar="NAME|ID", help="Pause (disable) a recurring run.")
@click.option("--resume", "resume", default=None, metavar="NAME|ID", help="Resume (enable) a recurring run.")
@click.option("--delete", "delete", default=None, metavar="NAME|ID", help="Delete a recurring run (its runs stay).")
@click.option("--wait", is_flag=True, help="Wait for the run to finish; exit 0 only if it SUCCEEDED.")
@click.option("--wait-timeout", type=click.FloatRange(min=1), default=86400.0, show_default=True,
              help="--wait: give up (exit 1, the run goes on) after this many seconds.")
@click.option("--namespace", default=None, help="Kubeflow profile namespace (multi-user deployments).")
@click.option("--token-file", default=None, envvar="KFP_TOKEN_FILE", type=click.Path(exists=True, dir_okay=False),
              help="File holding a bearer token for the KFP API ($KFP_TOKEN_FILE; or the token itself in $KFP_TOKEN).")
@click.option("--token", "token_given", default=None, hidden=True)  # refused: `ps` would show it
@click.option("--cookie-file", default=None, envvar="KFP_COOKIE_FILE", type=click.Path(exists=True, dir_okay=False),
              help="File holding the session cookie of a Dex-protected deployment, e.g. 'authservice_session=...' "
                   "from the browser after login ($KFP_COOKIE_FILE; or the cookie itself in $KFP_COOKIE).")
@click.option("--cookie", "cookie_given", default=None, hidden=True)  # refused: `ps` would show it
@click.option("--ca-cert", default=None, envvar="KFP_CA_CERT", type=click.Path(exists=True, dir_okay=False),
              help="PEM CA bundle that signs the endpoint's TLS certificate (private CA; $KFP_CA_CERT).")
@click.option("--service-account", default=None, help="Kubernetes service account the run's pods use.")
def submit(
    host: str,
    experiment: str | None,
    assignments: tuple[str, ...],
    image: str | None,
    run_name: str | None,
    cron: str | None,
    name: str | None,
    max_concurrency: int | None,
    catchup: bool,
    pause: str | None,
    resume: str | None,
    delete: str | None,
    wait: bool,
    wait_timeout: float,
    namespace: str | None,
    token_file: str | None,
    token_given: str | None,
    cookie_file: str | None,
    cookie_given: str | None,
    ca_cert: str | None,
    service_account: str | None,
) -> None:
    """Start a pipeline run on Kubeflow; with --schedule, a recurring run (scheduled retraining).

    Scheduled runs end early when neither the data, the code nor the params changed since the last model.
    """
    from pipelines import submit as sub
    from pipelines.cron import CronError
    from pipelines.overrides import OverrideError
    from pipelines.product_gan import default_params_text
    from pipelines.settings import pipeline_params
    from productgan.params import ParamsError

    _require_kfp("productgan submit")
    if sum(map(bool, (pause, resume, delete))) > 1:
        raise click.UsageError("--pause, --resume, --delete: give one")
    if (pause or resume or delete) and (cron or assignments or wait):
        raise click.UsageError("--pause/--resume/--delete change an existing recurring run; drop --schedule, --param "
                               "and --wait")
    if wait and cron:
        raise click.UsageError("--wait waits for a one-off run; a recurring run (--schedule) does not finish")
    for given, what, env, option in ((cookie_given, "session cookie", "KFP_COOKIE", "--cookie-file"),
                                     (token_given, "bearer token", "KFP_TOKEN", "--token-file")):
        if given is not None:
            flag = option.removesuffix("-file")
            raise click.UsageError(f"{flag} VALUE shows the {what} to every user of this machine (ps); put it "
                                   f"in ${env} or in a file only you can read ({option} FILE)")
    try:
        token = sub.credential(token_file, "KFP_TOKEN", "the bearer token")
        cookie = sub.credential(cookie_file, "KFP_COOKIE", "the cookie (authservice_session=...)")
        kfp_client = sub.client(host, namespace, token, cookie, ca_cert)
        if delete:
            rid = sub.delete_recurring_run(kfp_client, delete, namespace=namespace)
            click.echo(f"submit: recurring run {delete} ({rid}) deleted")
            return
        if pause or resume:
            rid = sub.set_enabled(kfp_client, pause or resume, enabled=bool(resume), namespace=namespace)
            click.echo(f"submit: recurring run {pause or resume} ({rid}) {'resumed' if resume else 'paused'}")
            return
        prepared = sub.prepare(default_params_text(), assignments, image)
        cfg = pipeline_params(prepared.params)
        experiment = experiment or cfg.experiment
        if cron:
            rid = sub.schedule(
                kfp_client, prepared, experiment, name or f"{cfg.name} retraining", cron,
                max_concurrency or cfg.max_concurrency, catchup, namespace, service_account,
            )
            click.echo(f"submit: recurring run {name or cfg.name + ' retraining'} ({rid}) in experiment {experiment}")
        else:
            run_id = sub.submit_run(kfp_client, prepared, experiment, run_name, namespace, service_account)
            click.echo(f"submit: run {run_id} in experiment {experiment}")
            if wait:
                run = sub.wait_for_run(kfp_client, run_id, wait_timeout, lambda s: click.echo(f"submit: run {s}"))
                if run.state != "SUCCEEDED":
                    why = getattr(getattr(run, "error", None), "message", None)
                    raise click.ClickException(f"run {run_id} ended {run.state}" + (f": {why}" if why else ""))
    except (sub.SubmitError, CronError, OverrideError, ParamsError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
