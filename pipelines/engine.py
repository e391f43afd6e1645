"""The container engine that builds and runs the project image here: podman (or docker), podman's settings
file, and a Docker-API socket for ``kfp.local.DockerRunner``.

Standard library only: ``make image`` (``infra/docker/build.py``) imports this with the system Python.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Settings for machines like CI's (see the file); used when runc is installed and CONTAINERS_CONF is unset.
PODMAN_CONF = REPO / "infra" / "podman" / "containers.conf"
DOCKER_SOCKET = Path("/var/run/docker.sock")


class EngineError(RuntimeError):
    """No usable container engine; the message says what to install or set."""


def engine() -> str:
    """``podman`` when installed (it also serves the Docker API), else ``docker``."""
    for name in ("podman", "docker"):
        if shutil.which(name):
            return name
    raise EngineError(
        "no container engine: install podman (apt-get install podman runc fuse-overlayfs slirp4netns uidmap) "
        "or docker"
    )


def engine_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for podman commands: ``CONTAINERS_CONF`` pointing at infra/podman/containers.conf
    unless the caller set one (and only where runc, which that file selects, is installed)."""
    out = dict(os.environ if env is None else env)
    if "CONTAINERS_CONF" not in out and PODMAN_CONF.is_file() and shutil.which("runc"):
        out["CONTAINERS_CONF"] = str(PODMAN_CONF)
    return out


def _answers(sock: Path) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(sock))
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        return s.recv(16).startswith(b"HTTP/")
    return False


@contextlib.contextmanager
def docker_api(timeout: float = 60.0) -> Iterator[str]:
    """A ``DOCKER_HOST`` value for the Docker SDK while the block runs.

    ``$DOCKER_HOST`` when set; else a running Docker daemon's socket; else ``podman system service`` on a
    socket of its own, started here and stopped when the block ends."""
    if os.environ.get("DOCKER_HOST"):
        yield os.environ["DOCKER_HOST"]
        return
    if DOCKER_SOCKET.is_socket() and _answers(DOCKER_SOCKET):
        yield f"unix://{DOCKER_SOCKET}"
        return
    if not shutil.which("podman"):
        raise EngineError(
            "no Docker API: set DOCKER_HOST, start a Docker daemon, or install podman "
            "(its `podman system service` serves the API)"
        )
    folder = Path(tempfile.mkdtemp(prefix="productgan-podman-"))  # short: a socket path has ~100 characters
    sock = folder / "docker.sock"
    log = open(folder / "service.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        env=engine_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not (sock.is_socket() and _answers(sock)):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise EngineError(
                    f"`podman system service` did not serve {sock}: "
                    f"{(folder / 'service.log').read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.2)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
