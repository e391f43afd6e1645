"""`productgan` command line. Each subcommand lives in ``productgan/commands/<module>.py`` and is imported
only when used, so ``productgan --help`` stays fast (no torch, mlflow or kfp at start-up).

Other installed code adds commands through the entry-point group ``productgan.commands`` (the Kubeflow
``pipeline`` and ``submit`` commands of ``pipelines/cli.py`` do, see pyproject.toml): the core never imports
an orchestrator, and lists those commands only when they are installed.
"""

from __future__ import annotations

import functools
import importlib
import os
from importlib.metadata import EntryPoint, entry_points

import click

from productgan.params import PARAMS_ENV, ParamsError
from productgan.redact import redact, redact_process_output

# name -> "module:attribute" under productgan.commands; the order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "ingest": "ingest:ingest",
    "preprocess": "preprocess:preprocess",
    "train": "train:train",
    "sync-run": "train:sync_run",
    "code-version": "train:code_version",
    "evaluate": "evaluate:evaluate",
    "register": "register:register",
    "promote": "register:promote",
    "generate": "generate:generate",
    "interpolate": "generate:interpolate",
    "edit": "generate:edit",
    "project": "project:project",
    "directions": "project:directions",
    "studio": "studio:studio",
    "params": "params:params",
    "serve": "serve:serve",
}
PLUGIN_GROUP = "productgan.commands"


@functools.cache
def plugin_commands() -> dict[str, EntryPoint]:
    """Commands registered by installed packages under the entry-point group ``productgan.commands``."""
    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in COMMANDS}


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        # Every message a step shows the user passes through the one redaction; a params.yaml problem is a
        # plain error naming the file and key, not a traceback.
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            exc.message = redact(exc.message)
            raise
        except ParamsError as exc:
            raise click.ClickException(redact(exc)) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name) is not None] + sorted(plugin_commands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            plugin = plugin_commands().get(name)
            return plugin.load() if plugin is not None else None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(f"productgan.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"productgan.commands.{module_name}":
                return None  # a step not built yet
            raise
        return getattr(module, attr, None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="productgan")
@click.option(
    "--params",
    "params_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="params.yaml to use (default: $PRODUCTGAN_PARAMS, else ./params.yaml).",
)
def cli(params_file: str | None) -> None:
    """Product photos in, a registered product-image GAN out.

    Steps: ingest -> preprocess -> train -> evaluate -> register (same params.yaml for `dvc repro`
    and the Kubeflow pipeline). Then generate and edit products with the registered generator.
    """
    if params_file:
        os.environ[PARAMS_ENV] = os.path.abspath(params_file)


def main() -> None:
    redact_process_output()  # messages, logs, library prints and tracebacks: no credential reaches the terminal
    cli(prog_name="productgan")
