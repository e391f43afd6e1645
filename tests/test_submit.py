"""`productgan submit` against a small KFP API server on 127.0.0.1 (the real kfp client, the real requests).

The fake implements exactly the v2beta1 endpoints the client uses for pipelines and their versions (the
upload is multipart, as on a real API server), runs, waiting for a run, recurring runs, pause, resume and
delete; it records every request and answers 501 to anything else (so a new call the client starts making
shows up). It can also serve HTTPS with a certificate from a private CA.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from click.testing import CliRunner

from pipelines import submit as submit_module
from pipelines.cron import CronError, to_kfp_cron
from pipelines.run_parameters import RUN_PARAMETERS
from productgan.cli import cli

REPO = Path(__file__).resolve().parents[1]
API = "/apis/v2beta1"


class FakeKFP:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, dict | None]] = []  # method, path, query, body
        self.experiments: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}  # pipeline_version_id -> version (with its uploaded pipeline_spec)
        self.run_states: list[str] = []  # what GET /runs/{id} answers next (the last one sticks)
        self.unhandled: list[tuple[str, str]] = []
        self.auth: list[str | None] = []  # Authorization header of each request
        self.cookies: list[str | None] = []  # Cookie header of each request

    def calls(self, method: str, path: str) -> list[dict | None]:
        return [b for m, p, _, b in self.requests if m == method and p == f"{API}{path}"]

    @staticmethod
    def _by_name(items, query: dict) -> list[dict]:
        if "filter" not in query:
            return list(items)
        (pred,) = json.loads(query["filter"][0])["predicates"]
        assert pred["key"] == "display_name" and pred["operation"] in ("EQUALS", 1)
        return [i for i in items if i["display_name"] == pred["stringValue"]]

    def handle(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        self.requests.append((method, path, query, body))
        route = path.removeprefix(API)
        if (method, route) == ("GET", "/healthz"):
            return 200, {"multi_user": False}
        if (method, route) == ("GET", "/experiments"):
            found = self._by_name(self.experiments.values(), query)
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if (method, route) == ("POST", "/experiments"):
            exp = {"experiment_id": f"exp-{uuid.uuid4().hex[:8]}", "display_name": body["display_name"]}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if (method, route) == ("POST", "/runs"):
            run = {**body, "run_id": f"run-{uuid.uuid4().hex[:8]}", "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        if method == "GET" and route.startswith("/runs/"):
            run = self.runs.get(route.removeprefix("/runs/"))
            if run is None:
                return 404, {"error": "run not found", "code": 5}
            if self.run_states:
                run["state"] = self.run_states.pop(0) if len(self.run_states) > 1 else self.run_states[0]
                if run["state"] == "FAILED":
                    run["error"] = {"code": 2, "message": "task train failed: OOMKilled"}
            return 200, run
        if (method, route) == ("GET", "/pipelines"):
            found = self._by_name(self.pipelines.values(), query)
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if (method, route) == ("POST", "/pipelines"):
            pipeline = {**body, "pipeline_id": f"pl-{uuid.uuid4().hex[:8]}"}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            return 200, pipeline
        if (method, route) == ("POST", "/pipelines/upload_version"):
            pid = query["pipelineid"][0]
            if pid not in self.pipelines:
                return 404, {"error": f"pipeline {pid} not found", "code": 5}
            spec, *platform = yaml.safe_load_all(body["uploadfile"])
            version = {"pipeline_id": pid, "pipeline_version_id": f"pv-{uuid.uuid4().hex[:8]}",
                       "display_name": query["name"][0], "description": query.get("description", [""])[0],
                       "pipeline_spec": {"pipeline_spec": spec, "platform_spec": platform[0] if platform else {}}}
            self.versions[version["pipeline_version_id"]] = version
            return 200, {k: v for k, v in version.items() if k != "pipeline_spec"}
        if method == "GET" and route.startswith("/pipelines/") and route.endswith("/versions"):
            pid = route.removeprefix("/pipelines/").removesuffix("/versions")
            found = self._by_name([v for v in self.versions.values() if v["pipeline_id"] == pid], query)
            return 200, ({"pipeline_versions": found, "total_size": len(found)} if found else {})
        if (method, route) == ("POST", "/recurringruns"):
            rr = {**body, "recurring_run_id": f"rr-{uuid.uuid4().hex[:8]}", "status": "ENABLED"}
            self.recurring[rr["recurring_run_id"]] = rr
            return 200, rr
        if (method, route) == ("GET", "/recurringruns"):
            found = self._by_name(self.recurring.values(), query)
            return 200, ({"recurringRuns": found, "total_size": len(found)} if found else {})
        if route.startswith("/recurringruns/"):
            rid, _, action = route.removeprefix("/recurringruns/").partition(":")
            if rid not in self.recurring:
                return 404, {"error": f"recurring run {rid} not found", "code": 5}
            if method == "GET" and not action:
                return 200, self.recurring[rid]
            if method == "POST" and action in ("enable", "disable"):
                self.recurring[rid]["mode"] = action.upper()
                return 200, {}
            if method == "DELETE" and not action:
                del self.recurring[rid]
                return 200, {}
        self.unhandled.append((method, path))
        return 501, {"error": f"fake KFP: {method} {path} not implemented"}


def _multipart(content_type: str, raw: bytes) -> dict:
    """The form fields of a multipart/form-data body (what /pipelines/upload_version receives)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
            for part in message.iter_parts()}


def _serve_fake(monkeypatch, tmp_path, tls: ssl.SSLContext | None = None):
    fake = FakeKFP()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            content_type = self.headers.get("Content-Type") or ""
            body = _multipart(content_type, raw) if content_type.startswith("multipart/") else (
                json.loads(raw) if raw else None)
            fake.auth.append(self.headers.get("Authorization"))
            fake.cookies.append(self.headers.get("Cookie"))
            status, payload = fake.handle(method, url.path, parse_qs(url.query), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._serve("GET")

        def do_POST(self):  # noqa: N802
            self._serve("POST")

        def do_DELETE(self):  # noqa: N802
            self._serve("DELETE")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # No stray kfp context (~/.config/kfp) or endpoint from the environment.
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KFP_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    for var in ("KFP_COOKIE", "KFP_CA_CERT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PRODUCTGAN_PARAMS", str(REPO / "params.yaml"))
    monkeypatch.setattr(submit_module, "POLL_SECONDS", 0.01)
    fake.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
        assert not fake.unhandled, f"the client called endpoints the fake does not implement: {fake.unhandled}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def kfp_server(monkeypatch, tmp_path):
    yield from _serve_fake(monkeypatch, tmp_path)


def submit(fake: FakeKFP, *args: str):
    return CliRunner().invoke(cli, ["submit", "--host", fake.url, *args], catch_exceptions=False)


def _spec(fake: FakeKFP, body: dict) -> tuple[dict, dict]:
    """(pipeline_spec, platform_spec) a run or recurring run request runs: the uploaded pipeline version's."""
    ref = body["pipeline_version_reference"]
    version = fake.versions[ref["pipeline_version_id"]]
    assert version["pipeline_id"] == ref["pipeline_id"]
    spec = version["pipeline_spec"]
    return spec["pipeline_spec"], spec["platform_spec"]


def test_submit_run_sends_the_pipeline_and_parameters(kfp_server):
    res = submit(kfp_server, "--experiment", "nightly", "--run-name", "try-1",
                 "--param", "train.steps=200", "--param", "dataset_version=0123456789abcdef0123456789abcdef.dir")
    assert res.exit_code == 0, res.output
    (exp_body,) = kfp_server.calls("POST", "/experiments")
    assert exp_body["display_name"] == "nightly"
    (run,) = kfp_server.calls("POST", "/runs")
    assert run["display_name"] == "try-1"
    assert run["experiment_id"] == next(iter(kfp_server.experiments))
    spec, platform = _spec(kfp_server, run)
    assert spec["pipelineInfo"]["name"] == "product-gan"
    tasks = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert {"preprocess", "train", "evaluate", "register"} <= set(tasks)
    assert "secretAsEnv" in json.dumps(platform)

    args = run["runtime_config"]["parameters"]
    assert args["dataset_version"] == "0123456789abcdef0123456789abcdef.dir"
    sent = yaml.safe_load(args["params"])
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    assert sent["train"]["steps"] == 200  # the override...
    assert sent["preprocess"] == shipped["preprocess"]  # ...on top of params.yaml
    assert f"run {kfp_server.runs and next(iter(kfp_server.runs))}" in res.output

    # the experiment is found by name the second time, not created again
    assert submit(kfp_server, "--experiment", "nightly").exit_code == 0
    assert len(kfp_server.calls("POST", "/experiments")) == 1
    assert len(kfp_server.calls("POST", "/runs")) == 2


def test_schedule_creates_a_recurring_run_with_cron_and_concurrency(kfp_server):
    res = submit(kfp_server, "--schedule", "0 3 * * 1", "--max-concurrency", "2", "--name", "weekly",
                 "--param", "force=true")
    assert res.exit_code == 0, res.output
    (body,) = kfp_server.calls("POST", "/recurringruns")
    assert body["display_name"] == "weekly"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"  # KFP's six fields, seconds first
    assert int(body["max_concurrency"]) == 2
    assert body["mode"] == "ENABLE" and body["no_catchup"] is True
    assert body["experiment_id"] in kfp_server.experiments
    assert kfp_server.experiments[body["experiment_id"]]["display_name"] == "product-gan"  # params default
    params = body["runtime_config"]["parameters"]
    assert params["force"] is True
    assert yaml.safe_load(params["params"]) == yaml.safe_load((REPO / "params.yaml").read_text())
    spec, _ = _spec(kfp_server, body)
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"params", "dataset_version", "force",
                                                                    *RUN_PARAMETERS}

    # a second schedule of the same name is refused before anything is created
    again = submit(kfp_server, "--schedule", "0 4 * * *", "--name", "weekly")
    assert again.exit_code != 0 and "already exists" in again.output
    assert len(kfp_server.calls("POST", "/recurringruns")) == 1


def test_pause_and_resume_by_name_or_id(kfp_server):
    assert submit(kfp_server, "--schedule", "@daily", "--name", "daily").exit_code == 0
    (rid,) = kfp_server.recurring

    res = submit(kfp_server, "--pause", "daily")
    assert res.exit_code == 0, res.output
    assert kfp_server.calls("POST", f"/recurringruns/{rid}:disable") == [None]
    assert kfp_server.recurring[rid]["mode"] == "DISABLE" and "paused" in res.output

    res = submit(kfp_server, "--resume", rid)
    assert res.exit_code == 0, res.output
    assert len(kfp_server.calls("POST", f"/recurringruns/{rid}:enable")) == 1
    assert kfp_server.recurring[rid]["mode"] == "ENABLE"

    res = submit(kfp_server, "--pause", "no-such-schedule")
    assert res.exit_code != 0 and "no recurring run is named or has id 'no-such-schedule'" in res.output


def test_auth_with_a_token_or_the_pods_service_account_token(kfp_server, tmp_path, monkeypatch):
    assert submit(kfp_server).exit_code == 0
    assert set(kfp_server.auth) == {None}  # standalone KFP: no credentials sent

    kfp_server.auth.clear()
    monkeypatch.setenv("KFP_TOKEN", "t0ken")
    assert submit(kfp_server).exit_code == 0
    assert set(kfp_server.auth) == {"Bearer t0ken"}
    monkeypatch.delenv("KFP_TOKEN")

    kfp_server.auth.clear()
    (tmp_path / "kfp-token").write_text("f1le-token\n")
    assert submit(kfp_server, "--token-file", str(tmp_path / "kfp-token")).exit_code == 0
    assert set(kfp_server.auth) == {"Bearer f1le-token"}

    kfp_server.auth.clear()  # never on the command line, where `ps` shows it to every user of the machine
    res = submit(kfp_server, "--token", "t0ken")
    assert res.exit_code != 0 and "$KFP_TOKEN" in res.output and "--token-file" in res.output
    assert kfp_server.auth == []

    token_file = tmp_path / "token"  # what the CronJob projects (audience pipelines.kubeflow.org)
    token_file.write_text("projected-sa-token")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    kfp_server.auth.clear()
    assert submit(kfp_server).exit_code == 0
    assert set(kfp_server.auth) == {"Bearer projected-sa-token"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "0 25 * * *"], "hour 25 is outside 0-23"),
        (["--schedule", "every monday"], "expected 5 fields"),
        (["--schedule", "0 3 * * 1", "--max-concurrency", "11"], "KFP accepts 1-10"),
        (["--param", "nonsense=1"], "neither a pipeline parameter"),
        (["--param", "force=maybe"], "expects boolean"),
        (["--param", "pipeline.retries=many"], "expected int"),
    ],
)
def test_bad_requests_fail_before_reaching_the_server(kfp_server, args, message):
    res = submit(kfp_server, *args)
    assert res.exit_code != 0
    assert message in res.output
    assert not kfp_server.calls("POST", "/recurringruns") and not kfp_server.calls("POST", "/runs")


def test_cron_conversion_and_validation():
    assert to_kfp_cron("0 3 * * 1") == "0 0 3 * * 1"
    assert to_kfp_cron("  30  2 1-15/2 JAN,jul ? ") == "0 30 2 1-15/2 JAN,jul ?"
    assert to_kfp_cron("0 0 3 * * MON-FRI") == "0 0 3 * * MON-FRI"
    assert to_kfp_cron("*/15 * * * *") == "0 */15 * * * *"
    assert to_kfp_cron("@weekly") == "@weekly" and to_kfp_cron("@every 6h") == "@every 6h"
    for bad, why in [("0 3 * *", "expected 5 fields"), ("0 3 * * 8", "day of week 8"), ("61 * * * *", "minute 61"),
                     ("0 3 5-1 * *", "runs backwards"), ("0 3 * * */0", "step /0"), ("? 3 * * *", "'?' is only")]:
        with pytest.raises(CronError, match=why.replace("*", r"\*").replace("?", r"\?")):
            to_kfp_cron(bad)


# --- pipeline versions, typed parameters, pipeline root ------------------------------------------------------

def test_runs_start_from_an_uploaded_pipeline_version_reused_while_the_spec_is_the_same(kfp_server):
    assert submit(kfp_server).exit_code == 0
    (created,) = kfp_server.calls("POST", "/pipelines")
    assert created["display_name"] == "product-gan"  # listed on the Pipelines page
    (pipeline_id,) = kfp_server.pipelines
    (version,) = kfp_server.versions.values()
    assert version["pipeline_id"] == pipeline_id and version["display_name"].startswith("product-gan-")
    assert "image ghcr.io/productgan/productgan:0.1.0" in version["description"]
    (run,) = kfp_server.calls("POST", "/runs")
    assert run["pipeline_version_reference"] == {"pipeline_id": pipeline_id,
                                                 "pipeline_version_id": version["pipeline_version_id"]}
    assert "pipeline_spec" not in run

    # a new spec (other typed defaults, other GPU count): a new version; the same spec again: found by name,
    # nothing uploaded
    assert submit(kfp_server, "--param", "train.steps=5").exit_code == 0
    assert submit(kfp_server).exit_code == 0
    assert submit(kfp_server, "--param", "pipeline.gpus=2").exit_code == 0
    assert len(kfp_server.calls("POST", "/pipelines")) == 1
    names = [v["display_name"] for v in kfp_server.versions.values()]
    assert len(names) == len(set(names)) == len(kfp_server.calls("POST", "/pipelines/upload_version")) == 3
    runs = kfp_server.calls("POST", "/runs")
    assert runs[0]["pipeline_version_reference"] == runs[2]["pipeline_version_reference"]


def test_typed_run_parameters_travel_with_every_run(kfp_server):
    res = submit(kfp_server, "--param", "train.steps=200", "--param", "resolution=32", "--param", "max_minutes=0")
    assert res.exit_code == 0, res.output
    (run,) = kfp_server.calls("POST", "/runs")
    args = run["runtime_config"]["parameters"]
    assert set(RUN_PARAMETERS) <= set(args)
    assert args["steps"] == 200 and args["resolution"] == 32 and args["max_minutes"] == 0
    assert args["recipe"] == "default" and args["eval_n"] == 10000  # params.yaml's values, explicit
    assert "pipeline_root" not in run["runtime_config"]  # KFP's default artifact store


def test_a_pipeline_root_from_params_goes_with_runs_and_recurring_runs(kfp_server):
    root = "s3://team-artifacts/productgan"
    assert submit(kfp_server, "--param", f"pipeline.pipeline_root={root}").exit_code == 0
    assert submit(kfp_server, "--schedule", "@daily", "--param", f"pipeline.pipeline_root={root}").exit_code == 0
    (run,) = kfp_server.calls("POST", "/runs")
    (recurring,) = kfp_server.calls("POST", "/recurringruns")
    assert run["runtime_config"]["pipeline_root"] == root == recurring["runtime_config"]["pipeline_root"]


# --- --wait, --delete ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("states", "code", "said"), [
    (["PENDING", "RUNNING", "SUCCEEDED"], 0, "submit: run SUCCEEDED"),
    (["RUNNING", "FAILED"], 1, "ended FAILED: task train failed: OOMKilled"),
    (["RUNNING", "CANCELING", "CANCELED"], 1, "ended CANCELED"),
])
def test_wait_follows_the_run_and_exits_with_its_state(kfp_server, states, code, said):
    kfp_server.run_states = list(states)
    res = CliRunner().invoke(cli, ["submit", "--host", kfp_server.url, "--wait"])
    assert res.exit_code == code, res.output
    assert said in res.output
    for state in states:
        assert f"submit: run {state}" in res.output
    (run_id,) = kfp_server.runs
    assert len(kfp_server.calls("GET", f"/runs/{run_id}")) >= len(states)


def test_wait_gives_up_after_its_timeout(kfp_server, monkeypatch):
    kfp_server.run_states = ["RUNNING"]
    monkeypatch.setattr(submit_module, "POLL_SECONDS", 0.3)
    res = CliRunner().invoke(cli, ["submit", "--host", kfp_server.url, "--wait", "--wait-timeout", "1"])
    assert res.exit_code == 1 and "still RUNNING after 1 s" in res.output


def test_delete_a_recurring_run_by_name(kfp_server):
    assert submit(kfp_server, "--schedule", "@daily", "--name", "nightly").exit_code == 0
    (rid,) = kfp_server.recurring
    res = submit(kfp_server, "--delete", "nightly")
    assert res.exit_code == 0, res.output
    assert kfp_server.calls("DELETE", f"/recurringruns/{rid}") == [None]
    assert not kfp_server.recurring and "deleted" in res.output
    assert submit(kfp_server, "--delete", "nightly").exit_code != 0  # gone
    assert submit(kfp_server, "--delete", "x", "--pause", "y").exit_code != 0


# --- Dex cookie, private CA ----------------------------------------------------------------------------------

def test_a_dex_session_cookie_goes_with_every_request(kfp_server, monkeypatch, tmp_path):
    """The cookie comes from a file or $KFP_COOKIE, never from the command line (where `ps` shows it)."""
    cookie = "authservice_session=MTcwMDAwMDAwMHxsb2dnZWQtaW4="
    (tmp_path / "cookie").write_text(cookie + "\n")
    assert submit(kfp_server, "--cookie-file", str(tmp_path / "cookie")).exit_code == 0
    assert set(kfp_server.cookies) == {cookie}
    kfp_server.cookies.clear()
    monkeypatch.setenv("KFP_COOKIE", cookie)
    assert submit(kfp_server, "--pause", "none").exit_code != 0  # any call: the cookie from the environment
    assert set(kfp_server.cookies) == {cookie}
    kfp_server.cookies.clear()
    refused = CliRunner().invoke(cli, ["submit", "--host", kfp_server.url, "--cookie", cookie])
    assert refused.exit_code == 2 and "--cookie-file FILE" in refused.output and cookie not in refused.output
    assert kfp_server.cookies == []  # nothing was sent


def _private_ca(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA and a server certificate it signed for 127.0.0.1 (as a private-CA Kubeflow ingress has)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "productgan test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kfp")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(cert.public_bytes(pem))
    (folder / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(folder / "server.pem", folder / "server.key")
    return folder / "ca.pem", tls


@pytest.fixture()
def kfp_https_server(monkeypatch, tmp_path):
    ca, tls = _private_ca(tmp_path)
    for fake in _serve_fake(monkeypatch, tmp_path, tls):
        fake.ca = ca
        yield fake


def test_https_with_a_private_ca_needs_its_certificate(kfp_https_server):
    res = submit(kfp_https_server)
    assert res.exit_code != 0 and "--ca-cert" in res.output  # not trusted: refused, with the way out named
    assert not kfp_https_server.requests
    res = submit(kfp_https_server, "--ca-cert", str(kfp_https_server.ca))
    assert res.exit_code == 0, res.output
    assert len(kfp_https_server.calls("POST", "/runs")) == 1
