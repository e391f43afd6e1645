"""`productgan submit` against a small KFP API server on 127.0.0.1 (the real kfp client, the real requests).

The fake implements exactly the v2beta1 endpoints the client uses for runs, recurring runs, pause and resume,
records every request, and answers 501 to anything else (so a new call the client starts making shows up).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from click.testing import CliRunner

from pipelines.cron import CronError, to_kfp_cron
from productgan.cli import cli

REPO = Path(__file__).resolve().parents[1]
API = "/apis/v2beta1"


class FakeKFP:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, dict | None]] = []  # method, path, query, body
        self.experiments: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.unhandled: list[tuple[str, str]] = []
        self.auth: list[str | None] = []  # Authorization header of each request

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
        self.unhandled.append((method, path))
        return 501, {"error": f"fake KFP: {method} {path} not implemented"}


@pytest.fixture()
def kfp_server(monkeypatch, tmp_path):
    fake = FakeKFP()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            fake.auth.append(self.headers.get("Authorization"))
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

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # No stray kfp context (~/.config/kfp) or endpoint from the environment.
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KFP_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PRODUCTGAN_PARAMS", str(REPO / "params.yaml"))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    assert not fake.unhandled, f"the client called endpoints the fake does not implement: {fake.unhandled}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def submit(fake: FakeKFP, *args: str):
    return CliRunner().invoke(cli, ["submit", "--host", fake.url, *args], catch_exceptions=False)


def _spec(body: dict) -> tuple[dict, dict]:
    """(pipeline_spec, platform_spec) of a run or recurring run request body."""
    spec = body["pipeline_spec"]
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
    spec, platform = _spec(run)
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
    spec, _ = _spec(body)
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"params", "dataset_version", "force"}

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
    assert submit(kfp_server, "--token", "t0ken").exit_code == 0
    assert set(kfp_server.auth) == {"Bearer t0ken"}

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
