"""The studio when the registry is slow and when many people use it at once: `productgan studio` on 127.0.0.1
over a real `mlflow server` (artifacts on moto's S3) that is stopped mid-way (SIGSTOP: it accepts connections
and answers nothing), and a studio with one worker and a short queue flooded with large requests."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import build_tiny_generator
from registry_helpers import fake_scorer, make_candidate
from servers import MlflowServer, S3Server
from studio_browser import env_for_cli, post, start_studio, stop

from productgan.registry.config import RegisterConfig
from productgan.registry.register import register_generator

pytestmark = pytest.mark.slow


def get_json(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory) -> Iterator[tuple[MlflowServer, Path]]:
    """`mlflow server` with product-gan versions 1 (champion) and 2 (challenger)."""
    root = tmp_path_factory.mktemp("studio-load")
    s3 = S3Server().start()
    s3.create_bucket()
    server = MlflowServer(root / "server", f"sqlite:///{root}/server/mlflow.db", s3.endpoint).start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key in list(os.environ):
                if key.startswith(("AWS_", "MLFLOW_")):
                    mp.delenv(key)
            mp.setenv("MLFLOW_TRACKING_URI", server.url)
            mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            mp.chdir(root)
            (root / "prepared").mkdir()
            for seed, fd in ((1, 3.0), (2, 4.0)):
                folder, metrics = make_candidate(root / f"c{seed}", {"fd_domain": fd, "class_accuracy": 0.8}, seed=seed)
                meta = json.loads((folder / "generator.json").read_text())["meta"]
                build_tiny_generator(folder, seed=seed, meta=meta)
                register_generator(folder, metrics, data_dir=root / "prepared", cfg=RegisterConfig(),
                                   scorer=fake_scorer)
        yield server, root
    finally:
        server.stop()
        s3.stop()


def test_a_stalled_registry_never_stalls_the_page(registry_server):
    """The registry stops answering: /api/info still answers at once from what is loaded (the refresh runs
    in the background, its calls capped), images are still made, and the page says why once the refresh
    gave up; when the registry answers again the warning goes."""
    server, root = registry_server
    (root / "params.yaml").write_text("studio:\n  refresh_s: 1\n  registry_retries: 0\n  registry_timeout_s: 2\n")
    env = {k: v for k, v in env_for_cli().items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=server.url, PRODUCTGAN_PARAMS=str(root / "params.yaml"))
    proc, url = start_studio([], cwd=root, env=env)
    stopped = False
    try:
        assert [m["key"] for m in get_json(f"{url}/api/info", 10)["models"]] == ["champion", "challenger"]
        os.killpg(server.proc.pid, signal.SIGSTOP)  # the whole server (its workers too) freezes
        stopped = True
        deadline, warning = time.monotonic() + 60, None
        while warning is None and time.monotonic() < deadline:
            start = time.monotonic()
            doc = get_json(f"{url}/api/info", 5)  # main: refreshes here, against the frozen server
            assert time.monotonic() - start < 3 and [m["key"] for m in doc["models"]] == ["champion", "challenger"]
            status, body, _ = post(f"{url}/api/generate", {"model": "challenger", "category": "Bag", "n": 2})
            assert status == 200, body[:300]
            warning = doc["warning"]
            time.sleep(0.5)
        assert warning and warning.startswith("the registry could not be read"), warning
        os.killpg(server.proc.pid, signal.SIGCONT)
        stopped = False
        deadline = time.monotonic() + 60
        while get_json(f"{url}/api/info", 5)["warning"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert get_json(f"{url}/api/info", 5)["warning"] is None
    finally:
        if stopped:
            os.killpg(server.proc.pid, signal.SIGCONT)
        stop(proc)


def test_a_full_studio_answers_503_with_retry_after_and_goes_on(tiny_generator_dir, tmp_path):
    """One request makes images at a time and one may wait, for 1 s: of many large requests at once, the
    rest are answered 503 with Retry-After (never a 500 or a hang), and the studio serves again after."""
    (tmp_path / "params.yaml").write_text("studio:\n  concurrency: 1\n  queue: 1\n  wait_s: 1\n")
    env = env_for_cli({"PRODUCTGAN_PARAMS": str(tmp_path / "params.yaml")})
    proc, url = start_studio(["--checkpoint", str(tiny_generator_dir)], cwd=tmp_path, env=env)
    large = {"category": "Bag", "n": 16, "seed": 1, "edits": {"size": 1024}}
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post(f"{url}/api/generate", large), range(8)))
        statuses = sorted(status for status, _, _ in answers)
        assert set(statuses) == {200, 503} and statuses.count(200) >= 1, statuses
        for status, body, headers in answers:
            if status == 503:
                assert headers["retry-after"] == "1" and "the studio is busy" in json.loads(body)["error"]
        status, body, _ = post(f"{url}/api/generate", {"category": "Bag", "n": 2})
        assert status == 200, body[:300]
        assert proc.poll() is None
    finally:
        stop(proc)
