"""A round trip through `mlflow models serve`: register the pyfunc model in a temp SQLite registry, serve
models:/product-gan@champion on 127.0.0.1, POST requests, decode the PNGs; bad requests get a 400 with a
clear message and the server keeps serving. Also productgan.load() of the same registered model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.local_server import free_port, stop_process_group, wait_until_answers
from productgan.render import decode_png_base64

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MODEL_URI = "models:/product-gan@champion"


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A tiny generator logged as the pyfunc model and registered as product-gan@champion (SQLite)."""
    import mlflow
    import torch
    from mlflow import MlflowClient

    from productgan.gan.config import GeneratorConfig
    from productgan.gan.export import save_generator
    from productgan.gan.networks import build_generator
    from productgan.serve.pyfunc import ProductGANModel, input_example, model_signature

    root = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    torch.manual_seed(0)
    cfg = GeneratorConfig(resolution=28, channels=1, latent_dim=32, base_channels=16, categories=CATEGORIES)
    generator_dir = save_generator(build_generator(cfg).eval(), cfg, root / "generator")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        client = MlflowClient(uri)
        experiment = client.create_experiment("serve-test", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(
                name="generator",
                python_model=ProductGANModel(),
                artifacts={"generator": str(generator_dir)},
                signature=model_signature(),
                input_example=input_example(),
                registered_model_name="product-gan",
            )
        client.set_registered_model_alias("product-gan", "champion", info.registered_model_version)
        yield uri, root


@pytest.fixture(scope="module")
def server(registered) -> Iterator[str]:
    uri, root = registered
    port = free_port()
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = uri
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # it runs uvicorn
    log = open(root / "serve.log", "wb")  # noqa: SIM115 - closed in teardown
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL_URI, "--env-manager", "local",
           "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/ping", "mlflow models serve", 120, lambda: proc.poll() is None,
                           (root / "serve.log").read_text, interval_s=0.5)
        yield url
    finally:
        # the server runs `exec uvicorn` under it: stop the whole process group this test started
        stop_process_group(proc)
        log.close()


@pytest.fixture(scope="module")
def guarded_server(registered) -> Iterator[str]:
    """`productgan serve`: MLflow's scoring app in-process, the guard in front, params.yaml's limits."""
    uri, root = registered
    port = free_port()
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = uri
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    log = open(root / "productgan-serve.log", "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen([sys.executable, "-m", "productgan", "serve", "--port", str(port)], env=env, cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/ping", "productgan serve", 120, lambda: proc.poll() is None,
                           (root / "productgan-serve.log").read_text, interval_s=0.5)
        yield url
    finally:
        stop_process_group(proc)
        log.close()


def readme_serving_commands() -> tuple[str, str]:
    """The README's serving block: (the server command, the client command), as a reader copies them."""
    text = (REPO / "README.md").read_text()
    block = text.split("Serve the registered model over HTTP and call it:", 1)[1].split("```bash\n", 1)[1]
    lines = block.split("```", 1)[0].splitlines()
    return lines[0].split("#", 1)[0].strip(), "\n".join(lines[1:])


def test_the_readmes_serving_commands_work_as_typed(registered, tmp_path):
    """After the quick start, in a shell that has not activated the virtualenv (its bin is not on PATH): the
    README's server command starts the champion's server, and its curl command writes the PNGs."""
    uri, root = registered
    server_cmd, client_cmd = readme_serving_commands()
    assert server_cmd == "make serve" and "127.0.0.1:5001/invocations" in client_cmd
    venv_bin = str(Path(sys.executable).parent)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env.update(MLFLOW_TRACKING_URI=uri, PORT=str(port),  # PORT: the README's `PORT=8000 make serve`
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["bash", "-c", server_cmd], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/ping", server_cmd, 120, lambda: proc.poll() is None,
                           (tmp_path / "serve.log").read_text, interval_s=0.5)
        client = subprocess.run(["bash", "-c", client_cmd.replace("127.0.0.1:5001", f"127.0.0.1:{port}")],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert client.returncode == 0, client.stderr
    finally:
        stop_process_group(proc)
        log.close()
    from PIL import Image

    sizes = [Image.open(tmp_path / f"out_{i}.png").size for i in range(3)]
    assert sizes == [(128, 128), (128, 128), (28, 28)]


def post(url: str, records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"dataframe_records": records}).encode()
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_round_trip_returns_pngs_that_match_the_python_api(server, registered):
    import productgan

    status, body = post(server, [
        {"category": "Dress", "seed": 7, "n": 3, "color": "#aa3355", "rotate": 15},
        {"category": "1", "seed": 2},
        {"category": "Bag", "size": 64, "background": "transparent", "flip": True},
    ])
    assert status == 200, body
    rows = body["predictions"]
    assert [(r["category"], r["seed"], r["index"]) for r in rows] == [
        ("Dress", 7, 0), ("Dress", 7, 1), ("Dress", 7, 2), ("Trouser", 2, 0), ("Bag", 0, 0)
    ]
    images = [decode_png_base64(r["image"]) for r in rows]
    assert [(i.mode, i.size) for i in images] == [("RGB", (28, 28))] * 3 + [("L", (28, 28)), ("RGBA", (64, 64))]

    # the same seed gives the same images, whether served or generated in Python from the registry
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", registered[0])
        product = productgan.load(MODEL_URI)
    assert product.categories == CATEGORIES
    local = product.generate(category="Dress", n=3, seed=7, color="#aa3355", rotate=15)
    for served, mine in zip(images[:3], local, strict=True):
        assert np.array_equal(np.asarray(served), np.asarray(mine))
    status, again = post(server, [{"category": "Dress", "seed": 7, "n": 3, "color": "#aa3355", "rotate": 15}])
    assert [r["image"] for r in again["predictions"]] == [r["image"] for r in rows[:3]]


@pytest.mark.parametrize(
    "records, message",
    [
        ([{"category": "Hat"}], "unknown category 'Hat'; known: T-shirt/top, Trouser"),
        ([{"category": "Bag", "n": 1000}], "n=1000 is out of range; ask for 1..64"),
        ([{"category": "Bag", "color": "#zz3355"}], "color='#zz3355' is not a colour"),
        ([{"category": "Bag"}, {"category": "Bag", "scale": 0}], "request 1: scale=0.0 is out of range"),
        ([{"category": "Bag", "n": 64}] * 5, "320 images asked in one call; the limit is 256"),
        ([{"category": "Bag", "n": 8, "size": 4096}], "134.2 megapixels asked in one request (images x output "
                                                       "size^2); the limit is 64 megapixels"),
        ([{"category": "Bag", "n": 2, "size": 4096}] * 2, "67.11 megapixels asked in one request"),
    ],
)
def test_bad_requests_get_a_clear_400_and_the_server_keeps_serving(server, records, message):
    status, body = post(server, records)
    assert status == 400
    assert message in body["message"]
    assert "Traceback" not in json.dumps(body)
    status, body = post(server, [{"category": "Coat", "seed": 1}])
    assert status == 200 and len(body["predictions"]) == 1


NESTED = b'{"dataframe_records": [{"category": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
ODD_INPUT = [
    (b'{"dataframe_records": [{"category": "Bag", "n": 1e999}]}', "n and seed must be whole numbers, got n=inf"),
    (b'{"dataframe_records": [{"category": "Bag", "seed": Infinity}]}', "n and seed must be whole numbers"),
    (b'{"dataframe_records": [{"category": "Bag", "seed": -Infinity}]}', "n and seed must be whole numbers"),
    ('{"dataframe_records": [{"category": "\u00b2"}]}'.encode(), "unknown category '\u00b2'"),
    (b'{"dataframe_records": [{"category": "Bag", "n": 3, "interpolate_to": 1e999}]}',
     "interpolate_to=inf must be a whole number"),
    (b'{"dataframe_records": [{"category": "Bag", "direction": 1, "strength": NaN}]}',
     "direction and strength go together"),
    (b'{"dataframe_records": [{"category": "Bag", "size": 1e999}]}', "size=inf must be a whole number"),
    (b'{"dataframe_records": [{"category": "Bag", "rotate": -1e999}]}', "rotate=-inf must be a finite number"),
]
ODD_IDS = ["n-1e999", "seed-inf", "seed-minus-inf", "superscript-two", "interpolate-inf", "strength-nan", "size-inf",
           "rotate-minus-inf"]


def post_raw(url: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize("served_by", ["server", "guarded_server"])
@pytest.mark.parametrize("body, message", ODD_INPUT, ids=ODD_IDS)
def test_overflowing_and_odd_input_is_a_400_with_its_reason(request, served_by, body, message):
    """The cases the studio refuses (tests/test_studio.py), sent to `mlflow models serve` and `productgan
    serve`: one validation, a 400 naming the value, never a 500 or a stack trace."""
    url = request.getfixturevalue(served_by)
    status, text = post_raw(url, body)
    assert status == 400, text
    assert message in json.loads(text)["message"] and "Traceback" not in text and "stack_trace" not in text
    status, ok = post(url, [{"category": "Coat", "seed": 1}])
    assert status == 200 and len(ok["predictions"]) == 1


def test_productgan_serve_refuses_deep_nesting_and_huge_bodies(guarded_server):
    """MLflow's own parser answers JSON nested past Python's recursion limit with a bare 500 (`mlflow models
    serve` does); `productgan serve` answers 400 with the reason, and 413 for a body over its limit."""
    from productgan.serve.model_server import MAX_BODY

    status, text = post_raw(guarded_server, NESTED)
    assert status == 400 and "nests too deeply" in json.loads(text)["message"], text
    status, text = post_raw(guarded_server, b"[" * (MAX_BODY + 1))
    assert status == 413 and f"larger than {MAX_BODY} bytes" in json.loads(text)["message"], text
    status, ok = post(guarded_server, [{"category": "Coat", "seed": 1}])
    assert status == 200 and len(ok["predictions"]) == 1


RSS_PROBE = """
import gc, resource, sys
import pandas as pd
from productgan.serve.pyfunc import ProductGANModel

class Context:
    artifacts = {"generator": sys.argv[1]}
    model_config = {}

model = ProductGANModel()
model.load_context(Context())
model.predict(None, pd.DataFrame([{"category": "Bag", "n": 1.0, "size": 64.0}]))
gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = model.predict(None, pd.DataFrame([{"category": "Bag", "n": 12.0, "size": 2048.0, "background": "transparent"}]))
print(len(out), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_served_images_are_encoded_and_freed_one_at_a_time(tiny_generator_dir, cli_env):
    """12 RGBA images of visible products at 2048 px (16 MiB each, 50 megapixels: under the limit): the model's
    peak memory grows by less than holding all 12 would take (glibc told to return freed blocks at once, so
    the peak is what was alive)."""
    env = {**cli_env, "MALLOC_MMAP_THRESHOLD_": "131072"}
    res = subprocess.run([sys.executable, "-c", RSS_PROBE, str(tiny_generator_dir)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows, growth = map(int, res.stdout.split()[-2:])
    all_images = 12 * 2048 * 2048 * 4
    assert rows == 12 and growth < all_images, f"peak grew {growth / 2**20:.0f} MiB; all 12 images are 192 MiB"


def test_pyfunc_in_python(registered):
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.exceptions import MlflowException

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", registered[0])
        model = mlflow.pyfunc.load_model(MODEL_URI)
    requests = pd.DataFrame([{"category": "Sandal", "seed": 3.0, "n": 2.0, "flip": True}, {"category": "7"}])
    out = model.predict(requests)
    assert list(out.columns) == ["image", "category", "seed", "index"]
    assert list(out["category"]) == ["Sandal", "Sandal", "Sneaker"]
    assert decode_png_base64(out["image"][0]).size == (28, 28)
    with pytest.raises(MlflowException, match="unknown category 'Hat'"):
        model.predict(pd.DataFrame([{"category": "Hat"}]))


def test_latent_edits_through_the_server_match_the_python_api(server, registered):
    """Latent edits (a direction, another category, a strip to a seed) and a projected latent as request
    columns; image edits after them; bad values get a 400 naming the value."""
    import productgan

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", registered[0])
        product = productgan.load(MODEL_URI)
    latent = product.check_latent(np.linspace(-1, 1, 32))[0].numpy()
    status, body = post(server, [
        {"category": "Dress", "seed": 7, "direction": 1, "strength": -3.0, "color": "#aa3355"},
        {"category": "Coat", "seed": 2, "n": 4, "interpolate_to": 9, "to_category": "Bag"},
        {"category": "Sandal", "latent": ",".join(f"{v:.9g}" for v in latent)},
    ])
    assert status == 200, body
    served = [np.asarray(decode_png_base64(r["image"])) for r in body["predictions"]]
    local = [*product.generate("Dress", seed=7, direction=1, strength=-3.0, color="#aa3355"),
             *product.generate("Coat", n=4, seed=2, interpolate_to=9, to_category="Bag"),
             *product.generate("Sandal", latent=latent)]
    assert len(served) == len(local) == 6
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(served, local, strict=True))

    for records, message in [
        ([{"category": "Bag", "direction": 99, "strength": 1}], "direction=99 is out of range"),
        ([{"category": "Bag", "strength": 1}], "direction and strength go together"),
        ([{"category": "Bag", "to_category": "Hat"}], "unknown category 'Hat'"),
        ([{"category": "Bag", "latent": "1,2,3"}], "latent has 3 numbers; this generator's latents have 32"),
        ([{"category": "Bag", "interpolate_to": 3.5, "n": 3}], "interpolate_to=3.5 must be a whole number"),
    ]:
        status, body = post(server, records)
        assert status == 400 and message in body["message"], body


def test_sixteen_concurrent_clients_get_the_answers_they_get_alone(server):
    """The scoring server runs predictions in parallel threads on one loaded generator: plain, interpolating
    (two batch sizes), direction and projected-latent requests, sent by 16 clients at once and interleaved,
    each answer byte-identical to the same request answered alone."""
    latent = ",".join(f"{v:.6f}" for v in np.linspace(-1, 1, 32))
    requests = [
        [{"category": "Dress", "seed": 7, "n": 8}],
        [{"category": "Dress", "seed": 3, "n": 8, "interpolate_to": 9, "to_category": "Coat"}],
        [{"category": "Bag", "seed": 1, "n": 5, "interpolate_to": 2, "to_category": "Sneaker"}],
        [{"category": "Coat", "seed": 2, "n": 3, "direction": 1, "strength": 2.5}],
        [{"category": "Sandal", "latent": latent, "to_category": "Bag"}],
    ]
    alone = []
    for records in requests:
        status, body = post(server, records)
        assert status == 200, body
        alone.append(body)

    def client(number: int) -> list[tuple[int, int]]:
        """Every request in an order of its own; (request, status) of each answer that differs from alone."""
        order = [(number + k) % len(requests) for k in range(2 * len(requests))]
        wrong = []
        for k in order:
            status, body = post(server, requests[k])
            if status != 200 or body != alone[k]:
                wrong.append((k, status))
        return wrong

    with ThreadPoolExecutor(16) as pool:
        wrong = [w for found in pool.map(client, range(16)) for w in found]
    assert wrong == [], f"{len(wrong)} of {16 * 2 * len(requests)} answers differ from the answer alone: {wrong}"


# productgan/registry/model_code.py as every version registered before productgan/serve/ existed carries it
MODEL_CODE_BEFORE_THE_MOVE = """from mlflow.models import set_model

from productgan.pyfunc import ProductGANModel

set_model(ProductGANModel())
"""
LOAD_AS_SERVE_DOES = """
import sys
import productgan.cli  # as `productgan serve` starts: productgan is imported before the model loads
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
out = model.predict(pd.DataFrame([{"category": "Bag", "seed": 1.0}]))
print(len(out), sys.modules["productgan.pyfunc"].__file__)
"""


def test_a_version_registered_before_the_move_still_serves(tiny_generator_dir, tmp_path, cli_env, monkeypatch):
    """A version whose model code imports productgan.pyfunc (registered before the serving side moved to
    productgan/serve/). Where productgan is imported before the model loads (`productgan serve`), Python finds
    productgan.pyfunc in this checkout, not in the version's bundled copy: it loads, through productgan/pyfunc.py,
    and serves over HTTP."""
    import mlflow

    from productgan.registry import log

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old_model_code = tmp_path / "model_code.py"
    old_model_code.write_text(MODEL_CODE_BEFORE_THE_MOVE)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(log, "MODEL_CODE", old_model_code)
    tags = {"training_run_id": "before-the-move", "generator_sha256": "0" * 64, "dataset_version": "abc123.dir"}
    experiment = mlflow.MlflowClient(uri).create_experiment("old", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        version, _ = log.log_and_register("product-gan-old", tiny_generator_dir, tags)
    model_uri = f"models:/product-gan-old/{version}"
    env = {**cli_env, "MLFLOW_TRACKING_URI": uri}

    res = subprocess.run([sys.executable, "-c", LOAD_AS_SERVE_DOES, model_uri], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows, answered_by = res.stdout.split()[-2:]
    assert rows == "1" and Path(answered_by) == REPO / "productgan" / "pyfunc.py"

    port = free_port()
    with open(tmp_path / "serve.log", "wb") as log_file:
        cmd = [sys.executable, "-m", "productgan", "serve", "--model", model_uri, "--port", str(port)]
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_answers(f"{url}/ping", "productgan serve", 120, lambda: proc.poll() is None,
                               (tmp_path / "serve.log").read_text, interval_s=0.5)
            status, body = post(url, [{"category": "Bag", "seed": 1, "n": 2}])
        finally:
            stop_process_group(proc)
    assert status == 200, body
    assert [decode_png_base64(r["image"]).size for r in body["predictions"]] == [(28, 28)] * 2
