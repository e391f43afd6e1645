"""The production stores under test: `mlflow server` with 4 workers on a throwaway PostgreSQL cluster (as
infra/k8s runs it), artifacts proxied to S3 (moto), and the 8-process register/promote race against it."""

from __future__ import annotations

import contextlib
import os

import pytest
from registry_helpers import register_race, server_client_env
from servers import MlflowServer, PostgresCluster, S3Server, postgres_bin

pytestmark = [
    pytest.mark.slow,
    # CI (make test) installs Debian's postgresql; there a missing server is an error, not a skip
    pytest.mark.skipif(postgres_bin() is None and not os.environ.get("CI"),
                       reason="PostgreSQL server programs not found: apt-get install postgresql (make test does)"),
]

PG_PASSWORD = "pg-test-pw-4c1e"


@pytest.fixture(scope="module")
def postgres_server_url(tmp_path_factory):
    with contextlib.ExitStack() as stack:  # each server is stopped even when stopping another one fails
        s3 = S3Server().start()
        stack.callback(s3.stop)
        s3.create_bucket()
        cluster = PostgresCluster(PG_PASSWORD)
        stack.callback(cluster.stop)
        cluster.start()
        server = MlflowServer(tmp_path_factory.mktemp("pg"), cluster.uri, s3.endpoint, workers=4)
        stack.callback(server.stop)
        yield server.start()


@pytest.fixture()
def client_env(monkeypatch, tmp_path):
    return server_client_env(monkeypatch, tmp_path)


def test_eight_processes_race_on_postgres_with_four_workers(postgres_server_url, client_env, tmp_path):
    """Exactly one champion, an unbroken champion history, every version decided; requests were spread over
    the server's workers (each a separate process with its own connection pool to PostgreSQL)."""
    register_race(postgres_server_url.url, tmp_path, "product-gan-pg-race", client_env)
    log = postgres_server_url.log()
    assert "Started server process" in log and PG_PASSWORD not in log
    assert log.count("Started server process") >= 4, log[-3000:]
