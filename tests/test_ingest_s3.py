"""Ingest from s3://bucket/prefix against a moto S3 server on 127.0.0.1, behind a small HTTP proxy that can
answer real 500 / 503 SlowDown responses, so botocore's own retry handling is what gets tested."""

from __future__ import annotations

import hashlib
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from productgan.cli import cli
from productgan.data.ingest import IngestParams, run_ingest
from productgan.data.sources.base import IngestError
from productgan.io import read_json


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class FaultyProxy:
    """Forwards S3 requests to moto; answers the first queued failures for an operation itself."""

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        self.failures: dict[str, list[tuple[int, str]]] = {"list": [], "get": []}
        self.log: list[tuple[str, str, int]] = []  # (operation, path, status)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                op = "list" if "list-type=2" in self.path else "get"
                queued = proxy.failures[op]
                if queued:
                    status, code = queued.pop(0)
                    body = (
                        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                        f"<Message>injected by the test proxy</Message></Error>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    proxy.log.append((op, self.path, status))
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                proxy.log.append((op, self.path, resp.status))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture()
def proxy(moto_url):
    p = FaultyProxy(moto_url)
    yield p
    p.close()


@pytest.fixture()
def aws_env(monkeypatch, tmp_path):
    """Fake credentials only; no profile, config file or endpoint from the machine leaks in."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


_counter = iter(range(1_000_000))


@pytest.fixture()
def shop_bucket(moto_url, aws_env, fmnist_small) -> tuple[str, dict[str, bytes]]:
    """A fresh bucket holding a photo shop under shops/summer/ (plus junk and a neighbouring prefix)."""
    bucket = f"photos-{next(_counter)}"
    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket=bucket)
    files = {}
    for i, category in enumerate(["Bag", "Bag", "Coat", "Sneaker", "Sneaker"]):
        files[f"{category}/p{i}.png"] = fmnist_small["train"][0][i].tobytes() + bytes([i])
    files["Sneaker/side/p9.png"] = b"nested photo bytes"
    for rel, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"shops/summer/{rel}", Body=data)
    s3.put_object(Bucket=bucket, Key="shops/summer/Bag/", Body=b"")  # a folder marker
    s3.put_object(Bucket=bucket, Key="shops/summer/.DS_Store", Body=b"junk")
    s3.put_object(Bucket=bucket, Key="shops/summer/Coat/._p2.png", Body=b"junk")
    s3.put_object(Bucket=bucket, Key="shops/summer2/Other/x.png", Body=b"not below the prefix")
    s3.close()
    return bucket, files


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_s3_prefix_ingest_paginates_and_equals_a_folder_ingest(tmp_path, shop_bucket, proxy):
    bucket, files = shop_bucket
    out = tmp_path / "data"
    params = IngestParams(source=f"s3://{bucket}/shops/summer", out=str(out), s3_endpoint_url=proxy.url)

    res = run_ingest(params, s3_page_size=2)

    assert res.action == "created" and res.files == len(files)
    assert sum(1 for op, _, _ in proxy.log if op == "list") >= 5  # 9 keys, 2 per page
    m = read_json(out / "manifest.json")
    assert m["sources"] == [{"name": "summer", "kind": "s3", "uri": f"s3://{bucket}/shops/summer/",
                             "categories": ["Bag", "Coat", "Sneaker"]}]
    assert {r["path"] for r in m["skipped"]} == {".DS_Store", "Coat/._p2.png"} and m["refused"] == []
    for f in m["files"]:
        data = files[f["path"].removeprefix("summer/")]
        assert (out / f["path"]).read_bytes() == data
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["size"] == len(data)
    assert [f["category"] for f in m["files"]] == ["Bag", "Bag", "Coat", "Sneaker", "Sneaker", "Sneaker"]

    # the same photos in a local folder give the same files in the manifest
    folder = tmp_path / "summer"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    run_ingest(IngestParams(source=str(folder), out=str(tmp_path / "local")))
    assert read_json(tmp_path / "local" / "manifest.json")["files"] == m["files"]


def test_s3_endpoint_from_aws_endpoint_url_through_the_cli(tmp_path, shop_bucket, moto_url, monkeypatch):
    bucket, files = shop_bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.chdir(tmp_path)  # no params.yaml: s3_endpoint_url defaults to null, so the env var is used
    runner = CliRunner()
    args = ["ingest", "--source", f"s3://{bucket}/shops/summer/", "--out", "data"]

    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert f"created data (summer): {len(files)} files" in res.output and "2 skipped" in res.output
    first = _tree(tmp_path / "data")

    res = runner.invoke(cli, args)  # re-ingest: byte-identical
    assert res.exit_code == 0 and "replaced" in res.output
    assert _tree(tmp_path / "data") == first


def test_s3_retries_throttling_and_server_errors(tmp_path, shop_bucket, proxy):
    bucket, files = shop_bucket
    proxy.failures["list"] = [(500, "InternalError")]
    proxy.failures["get"] = [(503, "SlowDown"), (503, "SlowDown")]
    out = tmp_path / "data"
    params = IngestParams(source=f"s3://{bucket}/shops/summer", out=str(out), s3_endpoint_url=proxy.url,
                          s3_max_attempts=3)

    res = run_ingest(params)

    assert res.files == len(files)
    statuses = [(op, status) for op, _, status in proxy.log]
    assert statuses[:2] == [("list", 500), ("list", 200)]  # the failed list call was retried
    gets = [(path, status) for op, path, status in proxy.log if op == "get"]  # files download in parallel
    throttled = [p for p, status in gets if status == 503]
    assert len(throttled) == 2
    for path in throttled:  # each throttled download was retried until it succeeded
        assert [s for p, s in gets if p == path][-1] == 200
    assert len({p for p, s in gets if s == 200}) == len(files)
    for f in read_json(out / "manifest.json")["files"]:
        assert (out / f["path"]).read_bytes() == files[f["path"].removeprefix("summer/")]


def test_s3_gives_up_after_max_attempts_and_leaves_nothing(tmp_path, shop_bucket, proxy):
    bucket, _ = shop_bucket
    proxy.failures["get"] = [(503, "SlowDown")] * 1000
    work = tmp_path / "work"
    work.mkdir()
    params = IngestParams(source=f"s3://{bucket}/shops/summer", out=str(work / "data"), s3_endpoint_url=proxy.url,
                          s3_max_attempts=2)

    with pytest.raises(IngestError, match=r"S3 download of .* failed.*SlowDown") as err:
        run_ingest(params)

    assert proxy.url in str(err.value)  # the endpoint is named
    attempts: dict[str, int] = {}
    for op, path, _ in proxy.log:
        if op == "get":
            attempts[path] = attempts.get(path, 0) + 1
    assert attempts and max(attempts.values()) == 2  # s3_max_attempts counts the first try
    assert all(s == 503 for op, _, s in proxy.log if op == "get")
    assert list(work.iterdir()) == []  # no --out, no temp folder


def test_s3_missing_bucket_is_a_clear_error(tmp_path, aws_env, moto_url):
    params = IngestParams(source="s3://no-such-bucket/x", out=str(tmp_path / "data"), s3_endpoint_url=moto_url)
    with pytest.raises(IngestError, match="NoSuchBucket.*credentials"):
        run_ingest(params)
    assert not (tmp_path / "data").exists()


def test_s3_unsafe_keys_are_refused(tmp_path, moto_url, aws_env):
    bucket = f"photos-{next(_counter)}"
    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="p/Bag/ok.png", Body=b"ok")
    s3.put_object(Bucket=bucket, Key="p/Bag/..\\..\\evil.png", Body=b"EVIL")
    s3.put_object(Bucket=bucket, Key="p/../evil.png", Body=b"EVIL")
    s3.put_object(Bucket=bucket, Key="p/Bag/../../evil.png", Body=b"EVIL")
    s3.put_object(Bucket=bucket, Key="p//evil.png", Body=b"EVIL")
    s3.put_object(Bucket=bucket, Key="p/Coat//a.png", Body=b"empty components are harmless")
    s3.close()
    out = tmp_path / "data"

    run_ingest(IngestParams(source=f"s3://{bucket}/p", out=str(out), s3_endpoint_url=moto_url))

    m = read_json(out / "manifest.json")
    assert [f["path"] for f in m["files"]] == ["p/Bag/ok.png", "p/Coat/a.png"]
    refused = {r["path"]: r["reason"] for r in m["refused"]}
    assert set(refused) == {"Bag/..\\..\\evil.png", "../evil.png", "Bag/../../evil.png", "/evil.png"}
    assert "backslash" in refused["Bag/..\\..\\evil.png"] and "'..'" in refused["../evil.png"]
    assert "absolute" in refused["/evil.png"]
    assert not any(b"EVIL" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
