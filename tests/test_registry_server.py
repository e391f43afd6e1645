"""Registration against a real `mlflow server` whose artifacts go to S3 (moto on 127.0.0.1), with and without
basic auth; eight processes registering at once; a fresh SQLite store opened by several processes at once;
the champion loaded by URI in a fresh process."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from registry_helpers import fake_scorer, make_candidate, register_race, server_client_env, start_together
from servers import MlflowServer, S3Server

from productgan.registry import promote as promotion
from productgan.registry.config import RegisterConfig
from productgan.registry.lock import lock_model_name
from productgan.registry.register import register_generator

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
ADMIN_PASSWORD = "productgan-admin-pw-1"


@pytest.fixture(scope="module")
def s3_server():
    server = S3Server().start()
    server.create_bucket()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_endpoint(s3_server):
    return s3_server.endpoint


@pytest.fixture(scope="module")
def server_url(tmp_path_factory, s3_endpoint):
    root = tmp_path_factory.mktemp("plain")
    server = MlflowServer(root, f"sqlite:///{root}/mlflow.db", s3_endpoint).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def auth_server_url(tmp_path_factory, s3_endpoint):
    root = tmp_path_factory.mktemp("auth")
    auth = {"MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key-0123", "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD}
    server = MlflowServer(root, f"sqlite:///{root}/mlflow.db", s3_endpoint, auth_env=auth).start()
    yield server.url
    server.stop()


@pytest.fixture()
def client_env(monkeypatch, tmp_path):
    """A client with no S3 credentials and no S3 endpoint: every artifact goes through the server."""
    return server_client_env(monkeypatch, tmp_path)


def test_register_through_proxy_and_load_champion_in_fresh_process(server_url, s3_server, client_env, tmp_path):
    client_env.setenv("MLFLOW_TRACKING_URI", server_url)
    (tmp_path / "prepared").mkdir()
    first = register_generator(*make_candidate(tmp_path / "c1", {"fd_domain": 10.0, "class_accuracy": 0.8}),
                               data_dir=tmp_path / "prepared", scorer=fake_scorer)
    worse = register_generator(*make_candidate(tmp_path / "c2", {"fd_domain": 11.0, "class_accuracy": 0.8}, seed=1),
                               data_dir=tmp_path / "prepared", scorer=fake_scorer)
    assert (first["decision"], worse["decision"], worse["champion_version"]) == ("promoted", "kept", "1")
    # re-scoring the champion downloaded it through the proxy; the weights live in S3
    assert worse["scores"]["champion"] == {"class_accuracy": 0.8, "fd_domain": 10.0}
    assert any(k.endswith("artifacts/generator/generator.safetensors") for k in s3_server.keys())

    # a fresh process, without the checkout on its path: the model brings its own productgan code
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["MLFLOW_TRACKING_URI"] = server_url
    code = """
import base64, io, json, sys
import mlflow, pandas as pd
from PIL import Image
model = mlflow.pyfunc.load_model("models:/product-gan@champion")
out = model.predict(pd.DataFrame([{"category": "Sneaker", "seed": 3.0, "n": 2.0}]))
sizes = [Image.open(io.BytesIO(base64.b64decode(s))).size for s in out["image"]]
print(json.dumps({"sizes": sizes, "categories": list(out["category"]), "code": sys.modules["productgan"].__file__}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["sizes"] == [[28, 28], [28, 28]] and out["categories"] == ["Sneaker", "Sneaker"]
    assert str(REPO) not in out["code"]


def test_eight_processes_register_and_promote_at_once(server_url, client_env, tmp_path):
    """Exactly one champion, every version recorded and decided against the champion current at that moment."""
    register_race(server_url, tmp_path, "product-gan-race", client_env)


def test_lock_is_mutually_exclusive(server_url, client_env):
    """Read-modify-write of a counter under the lock from 6 threads x 2 rounds: no update is lost."""
    import threading

    from productgan.registry import store
    from productgan.registry.lock import PromotionLock

    client_env.setenv("MLFLOW_TRACKING_URI", server_url)
    c = store.client()
    name = "lock-stress"
    c.create_registered_model(name, tags={"counter": "0"})
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(2):
                with PromotionLock(c, name, lease_s=60, timeout_s=120, poll_s=0.05):
                    value = int(c.get_registered_model(name).tags["counter"])
                    time.sleep(0.05)  # widen the window a lost update would need
                    c.set_registered_model_tag(name, "counter", str(value + 1))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert c.get_registered_model(name).tags["counter"] == "12"
    assert not c.search_model_versions(f"name='{lock_model_name(name)}'")


def test_fresh_sqlite_store_opened_by_several_processes_at_once(client_env, tmp_path):
    """Four processes start on a SQLite file that does not exist yet and all register (MLflow alone crashes)."""
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    env = {k: v for k, v in os.environ.items()}
    env.update(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(REPO))
    procs = []
    for i, fd in enumerate([10.0, 8.0, 9.0, 11.0]):
        work = tmp_path / f"w{i}"
        work.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, str(TESTS / "registry_worker.py"), str(work), str(i), str(fd), "0.8", "product-gan"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    start_together(tmp_path, procs)

    from productgan.registry import store

    client_env.setenv("MLFLOW_TRACKING_URI", uri)
    c = store.client()
    assert len(c.search_model_versions("name='product-gan'")) == 4
    champion = promotion.aliases(c, "product-gan")["champion"]
    assert json.loads(c.get_model_version("product-gan", champion).tags["promotion.scores"])[
        "challenger"]["fd_domain"] == 8.0


def test_basic_auth_server(auth_server_url, client_env, tmp_path):
    request = urllib.request.Request(f"{auth_server_url}/api/2.0/mlflow/registered-models/search")
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(request, timeout=10)
    assert anonymous.value.code == 401
    wrong = base64.b64encode(b"admin:not-the-password").decode()
    request.add_header("Authorization", f"Basic {wrong}")
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(request, timeout=10)
    assert bad.value.code == 401

    client_env.setenv("MLFLOW_TRACKING_URI", auth_server_url)
    client_env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    client_env.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    (tmp_path / "prepared").mkdir()
    result = register_generator(*make_candidate(tmp_path / "c1", {"fd_domain": 3.0, "class_accuracy": 0.7}),
                                data_dir=tmp_path / "prepared", cfg=RegisterConfig(), scorer=fake_scorer)
    assert result["decision"] == "promoted"

    import mlflow

    local = Path(mlflow.artifacts.download_artifacts("models:/product-gan@champion/artifacts/generator",
                                                     dst_path=str(tmp_path / "dl")))
    assert (local / "generator.safetensors").stat().st_size > 0
