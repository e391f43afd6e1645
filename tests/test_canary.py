"""No credential leaves the environment: the whole chain runs with distinctive canary secrets in
MLFLOW_TRACKING_URI (the admin password of a real `mlflow server --app-name basic-auth`), MLFLOW_TRACKING_PASSWORD,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and KFP_COOKIE (a Dex session cookie) -- ingest from S3 (moto), preprocess,
train, evaluate, register, generate from the registry, `pipeline run-local` (kfp.local subprocess runner) and a
`submit` that cannot connect, all at tiny sizes -- then
every file the run wrote (outputs, checkpoints, the MLflow store, every artifact object in S3, the KFP outputs)
and every line it printed is searched: the canaries appear nowhere, not even base64-encoded."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from servers import MlflowServer, S3Server, boto_creds

from pipelines.local import TINY, make_tiny_source
from pipelines.overrides import apply_overrides
from productgan.io import read_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
URI_PASSWORD = "CanaryUriPw-4b7e2d91"  # the server's admin password, given only inside the tracking URI
CANARIES = {
    "MLFLOW_TRACKING_URI": URI_PASSWORD,
    "MLFLOW_TRACKING_PASSWORD": "CanaryTrackingPw-93c1aa07",
    "AWS_SECRET_ACCESS_KEY": "CanaryAwsSecret-5d02f6be",
    "AWS_SESSION_TOKEN": "CanaryAwsSession-e871c3d4",
    "KFP_COOKIE": "CanaryKfpCookie-0d7a52e9",  # a Dex login's session cookie, for `productgan submit`
}
PHOTOS = "photos"


def _forms(secret: str) -> list[bytes]:
    """The secret as text, and inside an HTTP basic-auth header (``admin:secret`` base64-encoded)."""
    return [secret.encode(), base64.b64encode(f"admin:{secret}".encode())]


def _leaks(data: bytes) -> list[str]:
    return [name for name, secret in CANARIES.items() if any(form in data for form in _forms(secret))]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """moto's S3 (a photo bucket and the artifact bucket) and a basic-auth tracking server whose admin password
    is the URI canary."""
    with contextlib.ExitStack() as stack:
        s3 = S3Server().start()
        stack.callback(s3.stop)
        s3.create_bucket()
        s3.create_bucket(PHOTOS)
        root = tmp_path_factory.mktemp("server")
        auth = {"MLFLOW_FLASK_SERVER_SECRET_KEY": "test-flask-key-0123", "MLFLOW_AUTH_ADMIN_PASSWORD": URI_PASSWORD}
        server = MlflowServer(root, f"sqlite:///{root}/mlflow.db", s3.endpoint, auth_env=auth)
        stack.callback(server.stop)
        yield s3, server.start()


def _upload_photos(s3: S3Server, folder: Path) -> None:
    client = boto3.client("s3", endpoint_url=s3.endpoint, **boto_creds())
    for path in sorted(folder.rglob("*.png")):
        client.upload_file(str(path), PHOTOS, f"shop/{path.relative_to(folder).as_posix()}")


def _s3_objects(s3: S3Server) -> dict[str, bytes]:
    client = boto3.client("s3", endpoint_url=s3.endpoint, **boto_creds())
    found = {}
    for bucket in (b["Name"] for b in client.list_buckets()["Buckets"]):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                found[f"s3://{bucket}/{obj['Key']}"] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return found


def test_no_canary_in_any_file_or_line_of_the_whole_chain(tmp_path, stores, cli_env):
    s3, server = stores
    work = tmp_path / "project"
    work.mkdir()
    params = apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), TINY.items())
    params["ingest"]["source"] = f"s3://{PHOTOS}/shop"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _upload_photos(s3, make_tiny_source(tmp_path / "tiny-source", per_category=8))

    env = {k: v for k, v in cli_env.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(
        MLFLOW_TRACKING_URI=server.url.replace("http://", f"http://admin:{URI_PASSWORD}@"),
        MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=CANARIES["MLFLOW_TRACKING_PASSWORD"],
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=CANARIES["AWS_SECRET_ACCESS_KEY"],
        AWS_SESSION_TOKEN=CANARIES["AWS_SESSION_TOKEN"], AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=s3.endpoint, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", PYTHONUNBUFFERED="1",
        PRODUCTGAN_CACHE=str(tmp_path / "cache"), KFP_COOKIE=f"authservice_session={CANARIES['KFP_COOKIE']}",
    )
    printed: list[tuple[str, str]] = []

    def step(*args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "productgan", *args], cwd=work, env=env, capture_output=True,
                             text=True, timeout=900)
        out = res.stdout + res.stderr
        printed.append((" ".join(args[:2]), out))
        assert res.returncode == 0, f"productgan {' '.join(args)}:\n{out[-6000:]}"
        return out

    step("ingest", "--out", "data")
    step("preprocess", "--input", "data", "--out", "prepared")
    step("train", "--data", "prepared", "--out", "models/generator")
    step("evaluate", "--generator", "models/generator", "--data", "prepared", "--out", "metrics/eval")
    step("register", "--generator", "models/generator", "--metrics", "metrics/eval/metrics.json", "--data", "prepared")
    step("generate", "--model", "models:/product-gan@champion", "--n", "1", "--out", "generated")
    out = step("pipeline", "run-local", "--workdir", "kfp", "--source", f"s3://{PHOTOS}/shop",
               "--param", "register.model_name=canary-pipeline")
    assert "trained, evaluated and registered" in out, out[-3000:]
    # submit with the session cookie to a Kubeflow that does not answer: it fails, and says so without it
    res = subprocess.run([sys.executable, "-m", "productgan", "submit", "--host", "http://127.0.0.1:9"], cwd=work,
                         env=env, capture_output=True, text=True, timeout=300)
    printed.append(("submit", res.stdout + res.stderr))
    assert res.returncode != 0 and "127.0.0.1:9" in res.stdout + res.stderr
    # the credentials were really used: the run and both registered models live on the basic-auth server
    from mlflow import MlflowClient

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        mp.setenv("MLFLOW_TRACKING_PASSWORD", URI_PASSWORD)
        client = MlflowClient(server.url)
        assert client.get_model_version_by_alias("product-gan", "champion")
        assert client.search_model_versions("name = 'canary-pipeline'")

    # run.json records where the run was logged, without the password (evaluate and register read it)
    assert read_json(work / "models" / "generator" / "run.json")["tracking_uri"] == f"http://***@127.0.0.1:{server.port}"
    leaks = [f"printed by `productgan {cmd}`: {names}" for cmd, text in printed if (names := _leaks(text.encode()))]
    written = [p for root in (work, server.root) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in written) and any("executor_output" in p.name for p in written)
    leaks += [f"{p}: {names}" for p in written if (names := _leaks(p.read_bytes()))]
    objects = _s3_objects(s3)
    assert any(key.endswith("generator.safetensors") for key in objects)
    leaks += [f"{key}: {names}" for key, data in objects.items() if (names := _leaks(data))]
    assert not leaks, "\n".join(leaks)
