"""Real servers for the tests, each started on 127.0.0.1 (a free port) and stopped after: an S3 store (moto),
`mlflow server` (SQLite or PostgreSQL backend, artifacts proxied to S3), and a throwaway PostgreSQL cluster."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.local_server import free_port, stop_process_group, wait_until_answers

BUCKET = "mlflow-test"
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def boto_creds() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


class S3Server:
    """moto's S3 on a fixed loopback port that can be stopped and started again; its objects live in this
    process, so what was stored before a stop is there again after the restart (as with a real store)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def create_bucket(self, bucket: str = BUCKET) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, **boto_creds()).create_bucket(Bucket=bucket)

    def keys(self, bucket: str = BUCKET) -> list[str]:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, **boto_creds())
        return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])]


class MlflowServer:
    """`mlflow server` with ``backend`` (a store URI) and artifacts proxied to ``s3://BUCKET/<root name>``."""

    def __init__(self, root: Path, backend: str, s3_endpoint: str, workers: int = 1, auth_env: dict | None = None,
                 env: dict | None = None):
        self.root, self.backend, self.s3_endpoint, self.workers = root, backend, s3_endpoint, workers
        self.auth_env = auth_env
        self.env = env or {}  # more environment for the server (e.g. PGUSER / PGPASSWORD)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self, timeout_s: float = 180) -> MlflowServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(FAKE_AWS, MLFLOW_S3_ENDPOINT_URL=self.s3_endpoint, **self.env)
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
               "--artifacts-destination", f"s3://{BUCKET}/{self.root.name}", "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", str(self.workers)]
        if self.auth_env:
            cmd += ["--app-name", "basic-auth"]
            env.update(self.auth_env)
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_until_answers(f"{self.url}/health", "mlflow server", timeout_s, lambda: self.proc.poll() is None,
                               self.log)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM to the server's whole process group (uvicorn workers too), SIGKILL if it lingers."""
        if self.proc is not None:
            stop_process_group(self.proc, grace_s=10)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


# --- PostgreSQL -------------------------------------------------------------------------------------------

def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (initdb, pg_ctl), newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PostgresCluster:
    """A throwaway cluster (initdb + pg_ctl) in a temp folder, listening on 127.0.0.1 only, with a password
    user and database ``mlflow``. PostgreSQL refuses to run as root: as root, the cluster runs as the system
    user ``postgres`` (which Debian's package creates)."""

    USER = "mlflow"

    def __init__(self, password: str) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server programs not found; apt-get install postgresql")
        self.password = password
        self.port = free_port()
        self.run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        # as root the cluster's user must reach its folder: /tmp, not a $TMPDIR only root may enter
        self.dir = Path(tempfile.mkdtemp(prefix="productgan-pg-", dir="/tmp" if self.run_as else None))
        self.data = self.dir / "data"
        if self.run_as is not None:
            os.chown(self.dir, self.run_as.pw_uid, self.run_as.pw_gid)

    @property
    def uri(self) -> str:
        return f"postgresql://{self.USER}:{self.password}@127.0.0.1:{self.port}/mlflow"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid} if self.run_as else {}
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "HOME": str(self.dir)}
        return subprocess.run(list(args), capture_output=True, text=True, check=check, env=env, cwd=self.dir,
                              timeout=120, **kwargs)

    def start(self) -> PostgresCluster:
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self.run_as is not None:
            os.chown(pwfile, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.USER, "--pwfile", str(pwfile),
                  "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8")
        pwfile.unlink()
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200 -c fsync=off"
        res = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "pg.log"),
                        "-o", opts, "-w", "-t", "120", "start", check=False)
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {res.stdout}{res.stderr}{self.log()[-3000:]}")
        self._createdb()
        return self

    def _createdb(self, name: str = "mlflow") -> None:
        env = {"PGPASSWORD": self.password}
        res = self._run_env(env, str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", self.USER, name)
        if res.returncode != 0:
            raise RuntimeError(f"createdb failed: {res.stderr}")

    def create_database(self, name: str) -> None:
        self._createdb(name)

    def _run_env(self, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", **extra}
        return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=60, check=False)

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "pg.log"
        return path.read_text(errors="replace") if path.exists() else ""
