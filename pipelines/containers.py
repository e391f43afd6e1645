"""Run the pipeline's steps in containers of the project image on this machine (``kfp.local.DockerRunner``).

Each step runs as on a cluster: in the image, as the image's non-root user, with a read-only root file system
(writable: the task's artifact paths under the pipeline root, which KFP mounts, and tmpfs at /tmp and $HOME),
and credentials and endpoints from environment variables, the same names the cluster's ConfigMap and
Secrets give (``pipelines.product_gan``: MLflow URI and login, S3 endpoint and keys). The containers share
the host's network, so an MLflow server and an S3 endpoint on 127.0.0.1 are reachable from them.

The Docker API comes from ``pipelines.engine.docker_api`` (``$DOCKER_HOST``, a Docker daemon, or podman's
``podman system service``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.engine import docker_api
from pipelines.local_server import free_port, stop_process_group, wait_until_answers

# What the cluster gives every step as environment (ConfigMap + Secrets), plus the region boto3 may need.
PASSED_ENV = (
    "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_DEFAULT_REGION", "AWS_REGION",
)
LABEL = "io.productgan.run-local"


class ContainerRunError(RuntimeError):
    """The containerized local run cannot start; the message says what to set or build."""


def step_environment(extra: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a step container gets: those of PASSED_ENV set here, then ``extra``."""
    env = os.environ if env is None else env
    out = {k: env[k] for k in PASSED_ENV if env.get(k)}
    out.update(extra or {})
    return out


def check_tracking_uri(uri: str) -> str:
    """Containers reach MLflow over HTTP only: a sqlite file or folder of this host is not theirs."""
    if not uri.startswith(("http://", "https://")):
        raise ContainerRunError(
            f"MLFLOW_TRACKING_URI={uri}: steps in containers need an MLflow tracking server (http://...); "
            "unset it to let run-local start one, or point it at your server"
        )
    return uri


def image_home(client: Any, image: str) -> str:
    """$HOME of the image's user (tmpfs there: the root file system of a step is read-only)."""
    try:
        env = client.images.get(image).attrs["Config"].get("Env") or []
    except Exception as exc:  # docker.errors.ImageNotFound, APIError
        raise ContainerRunError(
            f"image {image}: not found by the container engine ({exc}). Build it with `make image TORCH=cpu` and "
            "pass the tag it prints with --image (podman names local images localhost/NAME:TAG)"
        ) from exc
    homes = [e.split("=", 1)[1] for e in env if e.startswith("HOME=")]
    return homes[-1] if homes else "/root"


def docker_runner(
    image: str, environment: Mapping[str, str], read_only_paths: Sequence[str | os.PathLike[str]] = (),
    writable_paths: Sequence[str | os.PathLike[str]] = (),
):
    """A ``kfp.local.DockerRunner`` that runs steps as described in this module's docstring."""
    import docker
    from docker.types import Mount
    from kfp import local

    client = docker.from_env()
    try:
        home = image_home(client, image)
    finally:
        client.close()
    mounts = [Mount(target=str(p), source=str(p), type="bind", read_only=True) for p in read_only_paths]
    mounts += [Mount(target=str(p), source=str(p), type="bind", read_only=False) for p in writable_paths]
    return local.DockerRunner(
        network_mode="host",
        environment=dict(environment),
        mounts=mounts,
        read_only=True,
        tmpfs={"/tmp": "rw,mode=1777", home: "rw,mode=1777"},
        labels={LABEL: "step"},
    )


@contextlib.contextmanager
def docker_host() -> Iterator[str]:
    """``DOCKER_HOST`` set for the block (the Docker SDK inside kfp.local reads it), restored afterwards."""
    before = os.environ.get("DOCKER_HOST")
    with docker_api() as host:
        os.environ["DOCKER_HOST"] = host
        try:
            yield host
        finally:
            if before is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = before


@contextlib.contextmanager
def gone_containers_not_found() -> Iterator[None]:
    """For the block, the Docker SDK reports a container that is already gone as ``NotFound``, as Docker does.

    kfp.local runs each step with ``auto_remove=True`` and treats ``NotFound`` while streaming its logs as
    "it finished and was removed". podman 4's Docker API answers that case with HTTP 500 "no such container",
    so a step that ends within a second (run-settings) would fail the run although it succeeded."""
    import docker.api.client
    import docker.errors

    original = docker.api.client.APIClient._raise_for_status

    def raise_for_status(self: Any, response: Any) -> None:
        try:
            original(self, response)
        except docker.errors.APIError as exc:
            if exc.status_code == 500 and "no such container" in str(exc.explanation or ""):
                raise docker.errors.NotFound(str(exc), response=exc.response, explanation=exc.explanation) from exc
            raise

    docker.api.client.APIClient._raise_for_status = raise_for_status
    try:
        yield
    finally:
        docker.api.client.APIClient._raise_for_status = original


@contextlib.contextmanager
def tracking_server(
    root: str | os.PathLike[str],
    artifacts_destination: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180.0,
) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (a free port) for the block: SQLite in ``root/mlflow.db``, artifacts
    proxied to ``artifacts_destination`` (default ``root/mlartifacts``). Yields its URL; log in root/server.log."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    destination = artifacts_destination or str(root / "mlartifacts")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", destination, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log_path = root / "server.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=root, env=dict(os.environ if env is None else env), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", "mlflow server", timeout, lambda: proc.poll() is None,
                           log_path.read_text, ContainerRunError)
        yield url
    finally:
        stop_process_group(proc, grace_s=30)
        log.close()


def writable_root(root: Path) -> Path:
    """A folder the image's non-root user can write (the pipeline root, where the steps create their task
    folders; train's checkpoint folder)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)
    return root
