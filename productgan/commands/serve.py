"""`productgan serve`: the registered generator over HTTP (MLflow's scoring server, productgan.serve.model_server).

Only click is imported here; mlflow, uvicorn and torch load when the command runs.
"""

from __future__ import annotations

import click

from productgan.commands.generate import _params


@click.command()
@click.option("--model", "model_uri", default=None,
              help="An MLflow model URI (default: models:/<register.model_name>@champion).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The server has no login: keep it on loopback unless the network is yours.")
@click.option("--port", type=click.IntRange(0, 65535), default=5001, show_default=True, help="Port to listen on.")
def serve(model_uri: str | None, host: str, port: int) -> None:
    """Serve the registered generator: POST /invocations as `mlflow models serve` answers it, with the limits of
    params.yaml's generate section (max_n, max_images, max_megapixels)."""
    import uvicorn

    from productgan.redact import redact
    from productgan.registry.config import load_register_config
    from productgan.serve.model_server import create_app

    params = _params()
    source = model_uri or f"models:/{load_register_config().model_name}@champion"
    click.echo(f"serve: loading {redact(source)}", err=True)
    try:
        app = create_app(source, params)
    except Exception as exc:  # an unknown model, an unreachable registry: one line, no traceback
        raise click.ClickException(f"serve: could not load {source}: {exc}") from None
    click.echo(f"serve: POST http://{host}:{port}/invocations (limits: {params.max_n} images per row, "
               f"{params.max_images} per call, {params.max_megapixels:g} megapixels per call)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
