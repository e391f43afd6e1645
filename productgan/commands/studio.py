"""`productgan studio`: a web page for making and editing products with the registered generator.

Only click is imported here; the web app, torch and mlflow load when the command runs.
"""

from __future__ import annotations

import ipaddress

import click

from productgan.commands.generate import _params

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")  # Host headers a loopback studio accepts


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--model", "model_uri", default=None,
              help="An MLflow model URI (default: models:/<register.model_name>@champion). For a registered "
                   "model the page shows its champion and challenger side by side.")
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False),
              help="A generator folder (`productgan train --out`) instead of a registered model.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The studio has no login: keep it on loopback unless the network is yours.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
def studio(model_uri: str | None, checkpoint: str | None, host: str, port: int) -> None:
    """Serve the product studio: pick a category, make, edit, compare and download products in a browser."""
    if model_uri and checkpoint:
        raise click.UsageError("give --model URI or --checkpoint DIR, not both")
    import os

    import uvicorn

    from productgan.params import ParamsError
    from productgan.redact import redact
    from productgan.registry.config import load_register_config
    from productgan.serve.api import RequestError
    from productgan.serve.studio.app import create_app
    from productgan.serve.studio.models import Catalog
    from productgan.serve.studio.settings import load_studio_params

    params = _params()
    try:
        settings = load_studio_params()
    except ParamsError as exc:
        raise click.ClickException(f"studio: {exc}") from None
    # a registry that stalls costs a refresh seconds, not MLflow's minutes of retries per call; user settings win
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.registry_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.registry_timeout_s))
    source = checkpoint or model_uri or f"models:/{load_register_config().model_name}@champion"
    click.echo(f"studio: loading {redact(source)}", err=True)
    try:
        catalog = Catalog(source, params, checkpoint=bool(checkpoint), refresh_s=settings.refresh_s)
    except (FileNotFoundError, RequestError, RuntimeError) as exc:
        raise click.ClickException(f"studio: {redact(str(exc))}") from None
    loopback = _is_loopback(host)
    if not loopback:
        click.echo(f"studio: listening on {host}: anyone who can reach it can use the studio (no login)", err=True)
    app = create_app(catalog, allowed_hosts=[*LOOPBACK_NAMES, host] if loopback else None, settings=settings)
    shown = ", ".join(f"{s.key} ({s.uri})" for s in catalog.slots())
    click.echo(f"studio: serving {shown}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
