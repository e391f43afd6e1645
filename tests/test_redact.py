"""productgan.redact: credentials in URIs, endpoints and messages never reach an output."""

from __future__ import annotations

import logging

import pytest

from productgan.redact import MASK, redact, redact_log_records

CANARY = "Canary-Pw-7f3a9c"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://admin:s3cret@mlflow:5000/x", "http://***@mlflow:5000/x"),
        (f"postgresql://mlflow:{CANARY}@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        (f"postgresql+psycopg2://u:{CANARY}@127.0.0.1/m?sslmode=require", "postgresql+psycopg2://***@127.0.0.1/m?sslmode=require"),
        (f"https://user:{CANARY}@mlflow.example.com", "https://***@mlflow.example.com"),
        (f"https://{CANARY}@mlflow.example.com/api", "https://***@mlflow.example.com/api"),
        (f"https://u:p@ss:{CANARY}@host/p", "https://***@host/p"),  # an unencoded @ in the password
        (f"https://mlflow/api?run=1&token={CANARY}&b=2", "https://mlflow/api?run=1&token=***&b=2"),
        (
            f"https://b.s3.amazonaws.com/k.png?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F2026&X-Amz-Signature={CANARY}",
            "https://b.s3.amazonaws.com/k.png?X-Amz-Algorithm=AWS4&X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        (f"https://acct.blob.core.windows.net/c/f?sv=2024&sig={CANARY}", "https://acct.blob.core.windows.net/c/f?sv=2024&sig=***"),
        (f"host=db user=mlflow password={CANARY} dbname=x", "host=db user=mlflow password=*** dbname=x"),
        (f"Authorization: Bearer {CANARY}", "Authorization: Bearer ***"),
        # passwords with characters a URI must encode, written unencoded
        (f"postgresql://mlflow:pa/{CANARY}@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        (f"https://admin:x#{CANARY}@mlflow.example.com/api", "https://***@mlflow.example.com/api"),
        (f"https://admin:a?b/{CANARY}#c@mlflow:5000", "https://***@mlflow:5000"),
        # login cookies (Dex / oauth2-proxy in front of Kubeflow)
        (f"authservice_session={CANARY}", "authservice_session=***"),
        (f"cookie oauth2_proxy_kubeflow={CANARY}; Path=/", "cookie oauth2_proxy_kubeflow=***; Path=/"),
        (f"Cookie: authservice_session={CANARY}; theme=dark", "Cookie: ***"),
        (f"Set-Cookie: oauth2_proxy={CANARY}; HttpOnly", "Set-Cookie: ***"),
        # nothing to hide: kept as it was
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("models:/product-gan@champion", "models:/product-gan@champion"),
        ("s3://bucket/prefix/Bag", "s3://bucket/prefix/Bag"),
        ("mailto:someone@example.com", "mailto:someone@example.com"),
        ("https://mlflow:5000/api?owner=a@b.com", "https://mlflow:5000/api?owner=a@b.com"),  # a port, no user
    ],
)
def test_redact_uris_and_messages(given: str, expected: str) -> None:
    assert redact(given, environ={}) == expected


def test_redact_finds_uris_inside_messages() -> None:
    msg = (f"could not reach http://admin:{CANARY}@mlflow:5000 (tracking URI) nor "
           f"'postgresql://m:{CANARY}@db/mlflow'; retry")
    out = redact(msg, environ={})
    assert CANARY not in out
    assert "http://***@mlflow:5000 (tracking URI)" in out and "'postgresql://***@db/mlflow'" in out


def test_redact_removes_secret_environment_values_anywhere() -> None:
    env = {"MLFLOW_TRACKING_PASSWORD": CANARY, "AWS_SESSION_TOKEN": "tok-" + CANARY, "AWS_REGION": "us-east-1",
           "AWS_SECRET_ACCESS_KEY": "short", "AWS_SHARED_CREDENTIALS_FILE": "/root/.aws/credentials",
           "KFP_COOKIE": "ck-" + CANARY}
    out = redact(f"a repr {{'pw': '{CANARY}', 'tok': 'tok-{CANARY}', 'c': 'ck-{CANARY}'}} in us-east-1 from "
                 "/root/.aws/credentials", environ=env)
    assert CANARY not in out and out.count(MASK) == 3
    assert "us-east-1" in out and "/root/.aws/credentials" in out  # not secrets: kept


def test_redact_accepts_any_object_and_is_idempotent() -> None:
    once = redact(ValueError(f"http://u:{CANARY}@h/x?token={CANARY}"), environ={})
    assert once == "http://***@h/x?token=***" and redact(once, environ={}) == once


def test_log_records_are_redacted() -> None:
    previous = logging.getLogRecordFactory()
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("productgan.test-redact")
    logger.addHandler(handler)
    try:
        redact_log_records()
        redact_log_records()  # twice: still one layer
        logger.warning("server %s is down", f"https://u:{CANARY}@mlflow")
        assert seen[-1].getMessage() == "server https://***@mlflow is down"
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(previous)


def test_cli_output_is_redacted(tmp_path) -> None:
    """What a command prints itself and what libraries print (MLflow's run links) pass through the redaction;
    an error message too."""
    import subprocess
    import sys

    code = (
        "import sys, click\n"
        "from productgan.redact import redact_process_output\n"
        "redact_process_output()\n"
        f"print('link http://u:{CANARY}@mlflow/#/runs/1')\n"
        f"click.echo('echo http://u:{CANARY}@mlflow')\n"
        f"sys.stderr.write('err ?token={CANARY}\\n')\n"
        f"raise RuntimeError('boom postgresql://m:{CANARY}@db/mlflow')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert res.returncode == 1
    assert CANARY not in res.stdout + res.stderr
    assert "link http://***@mlflow/#/runs/1" in res.stdout and "echo http://***@mlflow" in res.stdout
    assert "err ?token=***" in res.stderr and "boom postgresql://***@db/mlflow" in res.stderr


def test_evaluate_reads_a_redacted_run_json_without_the_mask(tmp_path) -> None:
    """run.json keeps the tracking URI redacted; evaluate's fallback to it must not log in as user '***'."""
    from productgan.io import atomic_write_json
    from productgan.metrics.tracking import training_run

    atomic_write_json(tmp_path / "run.json", {"run_id": "abc", "tracking_uri": redact(f"https://u:{CANARY}@mlflow")})
    assert training_run(tmp_path) == ("abc", "https://mlflow")


def test_pipeline_run_local_summary_shows_the_tracking_uri_redacted(tmp_path, monkeypatch) -> None:
    """`pipeline run-local` ends with the MLflow line (URI and `mlflow ui` command): no password in it, also
    when the command is invoked in-process (no process-wide redaction)."""
    from click.testing import CliRunner

    import pipelines.local
    from pipelines.cli import pipeline

    uri = f"postgresql://mlflow:{CANARY}@db:5432/mlflow"
    monkeypatch.setattr(pipelines.local, "run_local", lambda *a, **k: pipelines.local.LocalRun(
        tmp_path, tmp_path / "run", uri, True, "summary"))
    res = CliRunner().invoke(pipeline, ["run-local", "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert CANARY not in res.output
    assert "MLflow:    postgresql://***@db:5432/mlflow  (mlflow ui --backend-store-uri postgresql://***@db" in (
        res.output)
