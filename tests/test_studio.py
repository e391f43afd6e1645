"""The product studio as a person uses it: `productgan studio` on 127.0.0.1 over a real MLflow registry
(SQLite, two registered tiny generators: champion and challenger), driven in headless Chromium through
selenium. The page's images are compared pixel for pixel with the Python API's, and byte for byte with
`productgan generate` and the pyfunc model's; bad input shows a message and the server goes on serving."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import build_tiny_generator
from PIL import Image
from registry_helpers import fake_scorer, make_candidate
from studio_browser import (
    SHOWN_PIXELS,
    chromium,
    env_for_cli,
    missing_browser,
    post,
    start_studio,
    stop,
    wait_for,
)

from productgan.cli import cli
from productgan.redact import redact
from productgan.registry.config import RegisterConfig
from productgan.registry.register import register_generator
from productgan.render import png_bytes
from productgan.serve.api import GenerateParams, load
from productgan.serve.edit import Edits, hue_distance, mean_hue, product_mask
from productgan.serve.outputs import image_name

pytestmark = pytest.mark.slow

MAX_N = 12  # generate.max_n in this test's params file: the studio's limit comes from params.yaml
RED = "#dd1111"
CHAMPION_SCORES = {"fd_domain": 3.0, "class_accuracy": 0.7}
CHALLENGER_SCORES = {"fd_domain": 4.0, "class_accuracy": 0.8}  # worse: registered, kept as challenger


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[tuple[Path, dict[str, str]]]:
    """product-gan version 1 (champion) and version 2 (challenger) in a fresh SQLite registry, registered
    by `register_generator` itself; each a tiny generator with visible (random) products."""
    root = tmp_path_factory.mktemp("studio")
    (root / "params.yaml").write_text(f"generate:\n  n: 4\n  max_n: {MAX_N}\n")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PRODUCTGAN_PARAMS": str(root / "params.yaml"),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    (root / "prepared").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # a SQLite store puts run artifacts under ./mlruns: keep them out of the checkout
        for key, value in env.items():
            mp.setenv(key, value)
        for seed, scores in ((1, CHAMPION_SCORES), (2, CHALLENGER_SCORES)):
            folder, metrics = make_candidate(root / f"c{seed}", scores, seed=seed)
            meta = json.loads((folder / "generator.json").read_text())["meta"]
            build_tiny_generator(folder, seed=seed, meta=meta)  # visible products; run.json stays
            register_generator(folder, metrics, data_dir=root / "prepared", cfg=RegisterConfig(), scorer=fake_scorer)
        yield root, env


@pytest.fixture(scope="module")
def studio(registry) -> Iterator[tuple[str, object]]:
    """`productgan studio` with its defaults (models:/product-gan@champion, 127.0.0.1) on a free port."""
    root, env = registry
    proc, url = start_studio([], cwd=root, env=env_for_cli(env))
    try:
        yield url, proc
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = missing_browser()
    if reason:
        pytest.fail(reason)
    downloads = tmp_path_factory.mktemp("downloads")
    driver = chromium(download_dir=downloads)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, "document.body.dataset.ready === 'true'")


def set_field(driver, element_id: str, text: str) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(text)


def click_generate(driver) -> dict:
    """Click Generate and wait until the page says the run is done; returns the #status data."""
    before = driver.execute_script("return document.querySelector('#status').dataset.run || '0'")
    driver.find_element("id", "generate").click()
    wait_for(driver, f"(document.querySelector('#status').dataset.run || '0') !== '{before}'")
    return driver.execute_script("return Object.assign({}, document.querySelector('#status').dataset)")


def message(driver) -> str:
    box = driver.find_element("id", "message")
    return box.text if box.is_displayed() else ""


def decode(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return base64.b64decode(src[len(prefix):])


# --- the page in a browser --------------------------------------------------------------------------------


def test_page_makes_red_rotated_products_identical_to_the_api(studio, registry, browser):
    url, _ = studio
    root, env = registry
    open_page(browser, url)
    assert browser.find_element("id", "source").text == f"product-gan from {env['MLFLOW_TRACKING_URI']}"
    browser.find_element("css selector", "#category option[value='Dress']").click()
    set_field(browser, "n", "4")
    set_field(browser, "seed", "7")
    # the colour picker writes the colour field (a native picker dialog cannot be clicked headless)
    browser.execute_script(
        f"const p = document.querySelector('#color-picker'); p.value = '{RED}';"
        "p.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    assert browser.find_element("id", "color").get_attribute("value") == RED
    set_field(browser, "rotate", "30")
    status = click_generate(browser)
    assert message(browser) == ""
    assert status["images"] == "8" and float(status["ms"]) > 0  # 4 images x (champion, challenger)

    shown = browser.execute_script(SHOWN_PIXELS)
    columns = browser.find_elements("css selector", "#columns .model")
    assert [c.get_attribute("data-slot") for c in columns] == ["champion", "challenger"]  # side by side
    assert "version 1" in columns[0].text and "version 2" in columns[1].text
    assert "fd_domain" in columns[0].text and "+1 vs champion (not better; lower is better)" in columns[1].text
    assert "registered: kept" in columns[1].text
    settings = {"color": RED, "rotate": 30}
    for alias, version in (("champion", "1"), ("challenger", "2")):
        product = load(f"models:/product-gan/{version}")
        want = product.generate("Dress", n=4, seed=7, **settings)
        names = [f"Dress_7_{i}.png" for i in range(4)]
        assert sorted(shown[alias]) == names
        for name, image in zip(names, want, strict=True):
            got = shown[alias][name]
            assert decode(got["src"]) == png_bytes(image)  # the PNG the page holds is the API's, byte for byte
            pixels = np.asarray(got["rgba"], dtype=np.uint8).reshape(got["h"], got["w"], 4)
            assert np.array_equal(pixels, np.asarray(image.convert("RGBA")))  # and so is what it draws
            plain = product.generate("Dress", n=4, seed=7, rotate=30)[names.index(name)]
            hue = mean_hue(image, product_mask(plain) > 0.5)
            assert hue is not None and hue_distance(hue, 0.0) < 10  # red
    assert not np.array_equal(  # champion and challenger are different generators, side by side
        shown["champion"]["Dress_7_0.png"]["rgba"], shown["challenger"]["Dress_7_0.png"]["rgba"])

    # one image downloads as itself: a link with its file name around the PNG
    link = browser.find_element("css selector", ".model[data-slot='champion'] .grid a")
    assert link.get_attribute("download") == "Dress_7_0.png"
    assert decode(link.get_attribute("href")) == decode(shown["champion"]["Dress_7_0.png"]["src"])


def test_the_same_settings_give_the_same_bytes_everywhere(studio, registry, tmp_path):
    """Studio API, `productgan generate`, the pyfunc model and the ZIP download: byte-identical PNGs."""
    import mlflow.pyfunc
    import pandas as pd

    url, _ = studio
    root, env = registry
    request = {"model": "champion", "category": "Sneaker", "n": 3, "seed": 11, "truncation": 0.8,
               "edits": {"color": "navy", "rotate": 15, "size": 56, "flip": True, "background": "white"}}
    status, body, _ = post(f"{url}/api/generate", request)
    assert status == 200, body
    result = json.loads(body)
    assert result["version"] == "1" and result["uri"] == "models:/product-gan/1"
    studio_pngs = {im["name"]: base64.b64decode(im["png"]) for im in result["images"]}

    out = tmp_path / "cli"
    run = CliRunner().invoke(cli, [
        "--params", env["PRODUCTGAN_PARAMS"], "generate", "--model", "models:/product-gan/1", "--category",
        "Sneaker", "--n", "3", "--seed", "11", "--truncation", "0.8", "--color", "navy", "--rotate", "15",
        "--size", "56", "--flip", "--background", "white", "--out", str(out)], env=env, catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert studio_pngs == {name: (out / name).read_bytes() for name in studio_pngs}

    model = mlflow.pyfunc.load_model("models:/product-gan@champion")
    rows = model.predict(pd.DataFrame([{"category": "Sneaker", "n": 3.0, "seed": 11.0, "truncation": 0.8,
                                        "color": "navy", "rotate": 15.0, "size": 56.0, "flip": True,
                                        "background": "white"}]))
    assert [base64.b64decode(p) for p in rows["image"]] == list(studio_pngs.values())

    status, data, headers = post(f"{url}/api/zip", request)
    assert status == 200 and headers["content-type"] == "application/zip"
    assert headers["content-disposition"] == 'attachment; filename="productgan_Sneaker_11.zip"'
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert list(files) == [*studio_pngs, "grid.png", "generate.json"]
    assert files == {name: (out / name).read_bytes() for name in files}  # grid and settings too
    assert post(f"{url}/api/zip", request)[1] == data  # the same ZIP again


def test_page_opens_with_each_models_first_grid(studio, registry, browser):
    """No empty panels on arrival: each model shows the defaults' grid (params generate.n, seed, the first
    category) before anything is pressed."""
    url, _ = studio
    open_page(browser, url)
    assert browser.execute_script("return document.querySelector('#status').dataset.run") == "1"
    shown = browser.execute_script(SHOWN_PIXELS)
    info = get_json(f"{url}/api/info")
    first, n, seed = info["models"][0]["categories"][0], info["defaults"]["n"], info["defaults"]["seed"]
    for alias, version in (("champion", "1"), ("challenger", "2")):
        want = load(f"models:/product-gan/{version}").generate(first, n=n, seed=seed)
        names = [image_name(first, seed, i) for i in range(n)]
        assert sorted(shown[alias]) == sorted(names)
        assert [decode(shown[alias][name]["src"]) for name in names] == [png_bytes(im) for im in want]


def test_the_colour_swatch_follows_the_typed_colour(studio, browser):
    url, _ = studio
    open_page(browser, url)
    for typed, swatch in (("#1e6fd0", "#1e6fd0"), ("#A35", "#aa3355"), ("navy", "#000080"), ("notacolour", "#000080")):
        set_field(browser, "color", typed)
        assert browser.find_element("id", "color-picker").get_attribute("value") == swatch, typed


def test_zip_and_interpolation_from_the_page(studio, browser):
    url, _ = studio
    open_page(browser, url)
    browser.find_element("css selector", "#category option[value='Bag']").click()
    set_field(browser, "n", "2")
    set_field(browser, "seed", "5")
    click_generate(browser)
    browser.find_element("css selector", ".model[data-slot='challenger'] button.zip").click()
    target = browser.downloads / "productgan_Bag_5.zip"
    deadline = time.monotonic() + 30
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist() == ["Bag_5_0.png", "Bag_5_1.png", "grid.png", "generate.json"]
        settings = json.loads(archive.read("generate.json"))
    assert settings["model"] == "models:/product-gan/2" and settings["categories"] == ["Bag"]

    set_field(browser, "seed-b", "6")
    set_field(browser, "steps", "5")
    browser.find_element("id", "interpolate").click()
    wait_for(browser, "document.querySelectorAll('.model .strip img').length === 10")
    captions = [c.text for c in browser.find_elements("css selector", ".model[data-slot='champion'] figcaption")]
    assert captions == ["seed 5", "0.25", "0.50", "0.75", "seed 6"]
    first = browser.find_element("css selector", ".model[data-slot='champion'] .strip img").get_attribute("src")
    want = load("models:/product-gan@champion").interpolate(category="Bag", seeds=(5, 6), steps=5)[0]
    assert decode(first) == png_bytes(want)


@pytest.mark.parametrize(
    "field, text, expected",
    [
        ("color", "notacolour", "color='notacolour' is not a colour; use #rgb, #rrggbb"),
        ("n", "13", f"n=13 is out of range; ask for 1..{MAX_N} images per request"),
        ("size", "5000", "size=5000 is out of range; use 1..4096 pixels"),
        ("truncation", "1.5", "truncation=1.5 is out of range; use (0, 1]"),
    ],
)
def test_bad_input_shows_a_message_and_the_server_keeps_serving(studio, browser, field, text, expected):
    url, proc = studio
    open_page(browser, url)
    set_field(browser, "n", "2")
    set_field(browser, field, text)
    before = browser.execute_script(SHOWN_PIXELS)
    click_generate(browser)
    shown = message(browser)
    assert f"champion: {expected}" in shown and f"challenger: {expected}" in shown
    assert browser.execute_script(SHOWN_PIXELS) == before  # nothing new drawn: the last good grid stays

    set_field(browser, field, "1" if field in ("n", "truncation") else "")  # fixed: it works again
    status = click_generate(browser)
    assert message(browser) == "" and int(status["images"]) > 0
    assert proc.poll() is None


def test_sixteen_concurrent_clients_get_the_answers_they_get_alone(studio):
    """Plain and interpolating requests (between categories at two frame counts, between seeds) on both
    models, sent by 16 clients at once and interleaved: each answer's images equal those answered alone."""
    url, proc = studio
    requests = [
        ("generate", {"model": "champion", "category": "Dress", "n": 8, "seed": 7}),
        ("interpolate", {"model": "champion", "categories": ["Dress", "Coat"], "seed": 3, "steps": 8}),
        ("interpolate", {"model": "challenger", "categories": ["Bag", "Sneaker"], "seed": 1, "steps": 5}),
        ("interpolate", {"model": "champion", "category": "Bag", "seeds": [5, 6], "steps": 4}),
        ("generate", {"model": "challenger", "category": "Coat", "n": 3, "seed": 2, "edits": {"color": "navy"}}),
    ]

    def images(kind: str, body: dict) -> tuple[int, list[str]]:
        status, data, _ = post(f"{url}/api/{kind}", body)
        result = json.loads(data)
        return status, [im["png"] for im in result.get("images", result.get("frames", []))]

    alone = [images(kind, body) for kind, body in requests]
    assert all(status == 200 and pngs for status, pngs in alone)

    def client(number: int) -> list[int]:
        order = [(number + k) % len(requests) for k in range(2 * len(requests))]
        return [k for k in order if images(*requests[k]) != alone[k]]

    with ThreadPoolExecutor(16) as pool:
        wrong = [k for found in pool.map(client, range(16)) for k in found]
    assert wrong == [], f"{len(wrong)} of {16 * 2 * len(requests)} answers differ from the answer alone"
    assert proc.poll() is None


# --- the API's contract -----------------------------------------------------------------------------------


def test_info_shows_champion_and_challenger_with_versions_and_metrics(studio, registry):
    url, _ = studio
    root, env = registry
    info = get_json(f"{url}/api/info")
    champion, challenger = info["models"]
    assert (champion["key"], champion["version"], challenger["key"], challenger["version"]) == (
        "champion", "1", "challenger", "2")
    assert champion["metrics"] == CHAMPION_SCORES and challenger["metrics"] == CHALLENGER_SCORES
    assert challenger["promotion"]["decision"] == "kept" and challenger["promotion"]["compared_with_version"] == "1"
    assert "fd_domain 4 vs champion 3" in challenger["promotion"]["reason"]
    assert challenger["lineage"]["recipe"] == "baseline" and champion["categories"][3] == "Dress"
    assert info["registry"] == {"model_name": "product-gan", "tracking_uri": env["MLFLOW_TRACKING_URI"],
                                "primary_metric": "fd_domain", "greater_is_better": False, "margin": 0.02}
    assert info["limits"] == {"max_n": MAX_N, "max_images": GenerateParams.max_images, "max_size": 4096,
                              "max_megapixels": GenerateParams.max_megapixels}
    assert info["edits"] == [f.name for f in dataclasses.fields(Edits)]


def test_page_has_a_control_for_every_edit(studio):
    url, _ = studio
    with urllib.request.urlopen(url, timeout=30) as resp:
        html = resp.read().decode()
        assert "script-src" not in resp.headers["content-security-policy"]  # default-src 'self' covers it
    for field in get_json(f"{url}/api/info")["edits"]:
        assert f'data-edit="{field}"' in html


@pytest.mark.parametrize(
    "body, status, expected",
    [
        ({"category": "Hat"}, 400, "unknown category 'Hat'; known: T-shirt/top, Trouser"),
        ({"category": "Bag", "model": "/etc/passwd"}, 400, "unknown model '/etc/passwd'; this studio serves: "
                                                            "champion, challenger"),
        ({"category": "../../etc/passwd"}, 400, "unknown category '../../etc/passwd'"),
        ({"category": "Bag", "seed": "x"}, 400, "n and seed must be whole numbers"),
        ({"category": "Bag", "edits": {"blur": 2}}, 400, "unknown edit(s) blur"),
        ({"category": "Bag", "path": "/etc"}, 400, "unknown field(s) path"),
        (["Bag"], 400, "the request must be a JSON object"),
        (b"{not json", 400, "the request is not valid JSON"),
        (b"x" * 70000, 413, "the request is larger than 65536 bytes"),
        # overflowing, odd and nested input: the checks the served model makes (tests/test_serve.py)
        (b'{"category": "Bag", "n": 1e999}', 400, "n and seed must be whole numbers, got n=inf"),
        ({"category": "Bag", "seed": 10**400}, 400, "n and seed must be whole numbers"),
        (b'{"category": "Bag", "seed": Infinity}', 400, "Infinity is not a JSON number"),
        (b'{"category": "Bag", "n": NaN}', 400, "NaN is not a JSON number"),
        ({"category": "\u00b2"}, 400, "unknown category '\u00b2'"),
        ({"category": "Bag", "edits": {"size": 1e300 * 1e300}}, 400, "Infinity is not a JSON number"),
        (b'{"category": "Bag", "edits": {"size": 1e999}}', 400, "size=inf must be a whole number"),
        (b'{"category": "Bag", "edits": {"rotate": -1e999}}', 400, "rotate=-inf must be a finite number"),
        (b'{"category": ' + b"[" * 30000 + b"]" * 30000 + b"}", 400, "the request nests too deeply"),
        ({"category": "Bag", "n": 8, "edits": {"size": 4096}}, 400,
         "134.2 megapixels asked in one request (images x output size^2); the limit is 64 megapixels"),
    ],
)
def test_bad_requests_get_clear_errors(studio, body, status, expected):
    url, proc = studio
    got, data, _ = post(f"{url}/api/generate", body)
    assert got == status and expected in json.loads(data)["error"], data[:300]
    assert b"Traceback" not in data
    assert proc.poll() is None


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'{"category": "Bag", "seeds": [1, 1e999]}', "n and seed must be whole numbers, got n=1, seed=inf"),
        (rb'{"categories": ["Bag", "\u00b2"]}', "unknown category '\u00b2'"),
        (b'{"category": "Bag", "seeds": [1, 2], "steps": 1e999}', "steps=inf must be a whole number"),
        (b'{"category": "Bag", "seeds": [1, 2], "steps": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"seeds": ' + b"[" * 30000 + b"]" * 30000 + b"}", "the request nests too deeply"),
        ({"category": "Bag", "seeds": [1, 2], "steps": 5, "edits": {"size": 4096}},
         "83.89 megapixels asked in one request"),
    ],
)
def test_bad_interpolations_get_clear_errors(studio, body, expected):
    url, proc = studio
    got, data, _ = post(f"{url}/api/interpolate", body)
    assert got == 400 and expected in json.loads(data)["error"], data[:300]
    assert proc.poll() is None


def test_only_loopback_and_only_its_own_files(studio, registry):
    url, _ = studio
    root, _ = registry
    assert "Uvicorn running on http://127.0.0.1:" in (root / "studio.log").read_text()
    for path in ("/../params.yaml", "/static/../../params.yaml", "/mlflow.db", "/studio.log"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}{path}", timeout=10)
        assert err.value.code == 404
    rebinding = urllib.request.Request(f"{url}/api/info", headers={"Host": "attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(rebinding, timeout=10)
    assert err.value.code == 400
    status, _, _ = post(f"{url}/api/generate", b'{"category": "Bag"}', headers={"Content-Type": "text/plain"})
    assert status == 415  # a cross-site form cannot post JSON without a CORS preflight


# --- credentials never shown ------------------------------------------------------------------------------


def test_redact_uri():
    assert redact("http://admin:s3cret@mlflow:5000/x") == "http://***@mlflow:5000/x"
    assert redact("postgresql://u:pw@db/ml?sslmode=require&password=pw2") == (
        "postgresql://***@db/ml?sslmode=require&password=***")
    assert redact("https://host/?token=abc&x=1") == "https://host/?token=***&x=1"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert redact("failed: https://a:b@h/c and http://d:e@f") == "failed: https://***@h/c and http://***@f"


def test_tracking_credentials_never_reach_the_page(registry, monkeypatch):
    """A studio whose registry moved to a server with credentials in its URI: the page gets the URI and the
    error redacted, and keeps serving the generators it has."""
    from productgan.serve.studio.app import info
    from productgan.serve.studio.models import Catalog

    root, env = registry
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    catalog = Catalog("models:/product-gan@champion", GenerateParams())
    secret_uri = "http://admin:s3cret-pw@127.0.0.1:9/mlflow?token=t0ken"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", secret_uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    catalog.refresh()  # what the background refresh does (Catalog.refresh_soon)
    doc = info(catalog)
    text = json.dumps(doc)
    assert "s3cret-pw" not in text and "t0ken" not in text
    assert doc["registry"]["tracking_uri"] == "http://***@127.0.0.1:9/mlflow?token=***"
    assert doc["warning"].startswith("the registry could not be read")
    assert [m["key"] for m in doc["models"]] == ["champion", "challenger"]

    result = CliRunner().invoke(cli, ["studio"], env={**env, "MLFLOW_TRACKING_URI": secret_uri,
                                                      "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                                                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    assert result.exit_code == 1 and "s3cret-pw" not in result.output and "t0ken" not in result.output
    assert "studio: the registry could not be read" in result.output


def test_checkpoint_studio_serves_one_generator(tiny_generator_dir, tmp_path):
    proc, url = start_studio(["--checkpoint", str(tiny_generator_dir)], cwd=tmp_path, env=env_for_cli())
    try:
        info = get_json(f"{url}/api/info")
        assert [m["key"] for m in info["models"]] == ["checkpoint"] and info["registry"] is None
        status, body, _ = post(f"{url}/api/generate", {"category": "Coat", "n": 2, "seed": 3})
        pngs = [base64.b64decode(im["png"]) for im in json.loads(body)["images"]]
        assert pngs == [png_bytes(i) for i in load(tiny_generator_dir).generate("Coat", n=2, seed=3)]
        assert Image.open(io.BytesIO(pngs[0])).size == (28, 28)
    finally:
        stop(proc)


def test_no_credential_or_local_path_reaches_the_page(tiny_generator_dir, tmp_path):
    """A model given as a (file:) URI with a token in it, and a checkpoint folder: the page, /api/info, every
    reply and the ZIP show neither the token nor the local path, only the folder's name."""
    secret = "Canary-Token-5e1f0c"
    for args in (["--model", f"file://{tiny_generator_dir}?token={secret}"], ["--checkpoint", str(tiny_generator_dir)]):
        proc, url = start_studio(args, cwd=tmp_path, env=env_for_cli())
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                texts = [resp.read().decode()]
            info = get_json(f"{url}/api/info")
            texts.append(json.dumps(info))
            for path, body in (("generate", {"category": "Coat", "n": 1}),
                               ("interpolate", {"category": "Coat", "seeds": [1, 2], "steps": 2}),
                               ("zip", {"category": "Coat", "n": 1})):
                status, data, _ = post(f"{url}/api/{path}", body)
                assert status == 200, data[:300]
                texts.append(data.decode("latin-1"))
        finally:
            stop(proc)
        for text in texts:
            assert secret not in text and str(tiny_generator_dir.parent) not in text
        assert info["models"][0]["uri"] == info["source"] == "generator"


def test_which_registry_models_a_uri_names():
    from productgan.serve.studio.models import parse_registry_uri

    assert parse_registry_uri("models:/product-gan@champion") == ("product-gan", "champion", None)
    assert parse_registry_uri("models:/product gan.v2/4") == ("product gan.v2", None, "4")
    assert parse_registry_uri("runs:/abc/generator") is None
    assert parse_registry_uri("models:/product-gan/latest") is None  # served as one model, no side by side
