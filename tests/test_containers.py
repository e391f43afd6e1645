"""The project image for real: `make image TORCH=cpu` builds it with podman; it holds what the steps need and
no secret; the whole pipeline runs twice in its containers (kfp.local.DockerRunner through podman's Docker
API) against an MLflow server and a moto S3 endpoint on 127.0.0.1: the first run trains and registers a
champion, the second ends at the retrain check; then the same image serves the champion to this host.

Slow (the first build on a fresh machine takes several minutes; later builds reuse podman's layers).
CI (.ci/run) installs podman and sets PRODUCTGAN_REQUIRE_CONTAINERS=1, so there a missing engine fails the
tests instead of skipping them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.engine import engine_env
from pipelines.local_server import free_port, wait_until_answers

REPO = Path(__file__).resolve().parents[1]
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz")
BUCKET = "productgan-containers"
# Distinctive fake credentials: the test proves they reach the steps from the environment and nowhere else.
S3_KEY_ID = "productgan-test-key"
S3_SECRET = f"productgan-test-secret-{uuid.uuid4().hex[:12]}"
SECRET_NAMES = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY)\w*\s*=", re.I)
DIRTY_CODE = "c0ffee00" * 5  # the code version a dirty tree's steps record (see `code_env`)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("podman") and not os.environ.get("PRODUCTGAN_REQUIRE_CONTAINERS"),
                       reason="podman is not installed (`make containers` installs it; CI requires it)"),
]


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=engine_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def build_image(*args: str) -> subprocess.CompletedProcess:
    """infra/docker/build.py (what `make image` runs) with the CPU flavour, its output in the test's log."""
    return subprocess.run([sys.executable, str(REPO / "infra" / "docker" / "build.py"), "--torch", "cpu", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="module")
def image() -> dict:
    """`make image TORCH=cpu`: the tag, the inspect record and the output of the build."""
    start = time.monotonic()
    result = subprocess.run(["make", "--no-print-directory", "image", "TORCH=cpu"], cwd=REPO, capture_output=True,
                            text=True, timeout=3600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"make image TORCH=cpu failed:\n{out[-8000:]}"
    (tag,) = re.findall(r"^image: (\S+)$", out, re.M)
    print(f"make image TORCH=cpu: {tag} in {time.monotonic() - start:.0f} s")
    (record,) = json.loads(podman("image", "inspect", tag).stdout)
    return {"tag": tag, "inspect": record, "output": out}


def run_in_image(image: dict, *cmd: str) -> str:
    return podman("run", "--rm", image["tag"], *cmd).stdout


def commit_of_tree() -> str:
    sys.path.insert(0, str(REPO / "infra" / "docker"))
    try:
        from build import git_commit
    finally:
        sys.path.pop(0)
    return git_commit()


# --- the image ---------------------------------------------------------------------------------------------

def test_image_holds_what_the_steps_need(image, fmnist_dir):
    tag = image["tag"]
    weights = run_in_image(image, "sh", "-c", 'sha256sum "$PRODUCTGAN_INCEPTION_WEIGHTS"').split()[0]
    assert weights == INCEPTION_SHA256  # the TF Inception graph every FID here uses
    listing = run_in_image(image, "sha256sum", *[f"/usr/share/datasets/fashion-mnist/{f}" for f in FMNIST_FILES])
    in_image = {Path(path).name: digest for digest, path in (line.split() for line in listing.splitlines())}
    # the same real Fashion-MNIST as Debian's package on this machine
    assert in_image == {f: hashlib.sha256((fmnist_dir / f).read_bytes()).hexdigest() for f in FMNIST_FILES}

    facts = json.loads(run_in_image(image, "python", "-c", (
        "import json, os, sys, torch, kfp, mlflow; "
        "print(json.dumps({'python': list(sys.version_info[:2]), 'torch': torch.__version__, "
        "'cuda': torch.version.cuda, 'kfp': kfp.__version__, 'uid': os.getuid(), 'home': os.environ['HOME']}))"
    )))
    lock = (REPO / "requirements.lock").read_text()
    assert facts["python"] == [3, 11]
    assert facts["torch"] == re.search(r"^torch==(\S+)", lock, re.M).group(1) + "+cpu" and facts["cuda"] is None
    assert facts["kfp"] == re.search(r"^kfp==(\S+)", lock, re.M).group(1)  # the steps run KFP's executor
    assert facts["uid"] == 10001 and image["inspect"]["Config"]["User"] == "10001:10001"
    # the torch wheel of the build context was mounted for pip only, never copied into the image
    leftovers = "find / -xdev -name 'torch-*.whl' 2>/dev/null; ls -A /wheels 2>/dev/null; true"
    assert run_in_image(image, "sh", "-c", leftovers).strip() == ""

    env = dict(e.split("=", 1) for e in image["inspect"]["Config"]["Env"])
    assert env["PRODUCTGAN_GIT_COMMIT"] == commit_of_tree()
    assert image["inspect"]["Config"]["Labels"]["org.opencontainers.image.revision"] == commit_of_tree()
    assert tag.endswith("-cpu") and commit_of_tree()[:12] in tag


def test_productgan_help_is_fast_in_the_image(image):
    """`productgan --help` loads no torch, MLflow or kfp (so it answers in a fraction of a second; the time
    is printed and kept in benchmarks/RESULTS.md, not asserted)."""
    timed = run_in_image(image, "python", "-c", (
        "import subprocess, time; t = time.perf_counter(); "
        "subprocess.run(['productgan', '--help'], check=True, capture_output=True); "
        "print(time.perf_counter() - t)"
    ))
    print(f"productgan --help in the image: {float(timed):.2f} s")
    trace = podman("run", "--rm", image["tag"], "python", "-X", "importtime", "-m", "productgan", "--help").stderr
    loaded = {line.split("|")[-1].strip().split(".")[0] for line in trace.splitlines() if "|" in line}
    assert "click" in loaded
    assert not loaded & {"torch", "mlflow", "kfp", "numpy", "pandas"}, sorted(loaded & {"torch", "mlflow", "kfp"})


def test_no_secret_in_the_image(image):
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", image["tag"]).stdout
    config = json.dumps(image["inspect"]["Config"])
    for text in (history, config):
        assert not SECRET_NAMES.search(text), SECRET_NAMES.search(text).group(0)
        assert S3_SECRET not in text
    # the host's CA bundle was mounted for the build only: the image keeps Debian's own
    host_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if host_cas:
        bundle = run_in_image(image, "cat", "/etc/ssl/certs/ca-certificates.crt")
        body = "".join(host_cas[0].read_text().split("\n")[1:4])
        assert body not in bundle.replace("\n", "")


@pytest.mark.parametrize("commit", ["", "unknown"])
def test_build_refuses_an_image_without_a_code_version(image, commit):
    """Without GIT_COMMIT every such image would look like the same code to the retrain check."""
    result = build_image("--git-commit", commit, "--image", "localhost/productgan-test-nocommit")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert "build arg GIT_COMMIT is required" in out, out[-3000:]
    assert podman("image", "exists", f"localhost/productgan-test-nocommit:{commit or 'no-commit'}-cpu",
                  check=False).returncode != 0


# --- the pipeline in containers ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_endpoint(fmnist_dir, tmp_path_factory) -> Iterator[str]:
    """moto S3 on 127.0.0.1 holding the tiny product-photo source under s3://BUCKET/products/."""
    import boto3
    from moto.server import ThreadedMotoServer

    from pipelines.local import make_tiny_source

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET,
                      region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    source = make_tiny_source(tmp_path_factory.mktemp("source") / "tiny", per_category=20)
    for path in sorted(source.rglob("*.png")):
        s3.upload_file(str(path), BUCKET, f"products/{path.relative_to(source).as_posix()}")
    yield url
    server.stop()


@pytest.fixture(scope="module")
def s3_env(s3_endpoint) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory, s3_env, s3_endpoint) -> Iterator[str]:
    """An MLflow server on 127.0.0.1 (SQLite), its artifacts proxied to s3://BUCKET/mlflow on moto."""
    from pipelines.containers import tracking_server

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(s3_env, MLFLOW_S3_ENDPOINT_URL=s3_endpoint)
    with tracking_server(tmp_path_factory.mktemp("mlflow"), f"s3://{BUCKET}/mlflow", env) as url:
        yield url


@pytest.fixture(scope="module")
def code_env(image) -> dict[str, str]:
    """Extra step environment. A tree with uncommitted changes builds as <commit>-dirty, which the retrain
    check never takes for known code (by design), so for such a tree the steps get a fixed code version, as
    test_pipeline_local gives its subprocess steps; a clean tree (CI) runs with the image's own commit."""
    return {"PRODUCTGAN_GIT_COMMIT": DIRTY_CODE} if commit_of_tree().endswith("-dirty") else {}


@pytest.fixture(scope="module")
def runs(image, mlflow_url, s3_env, code_env, tmp_path_factory):
    """The pipeline twice in containers of the image, the source on S3, MLflow on the server."""
    from pipelines.local import run_local
    from pipelines.product_gan import default_params_text

    work = tmp_path_factory.mktemp("containers")
    results, seconds = [], []
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("MLFLOW_", "AWS_"))]:
            mp.delenv(key)
        for key, value in {**s3_env, "MLFLOW_TRACKING_URI": mlflow_url}.items():
            mp.setenv(key, value)
        text = default_params_text(REPO / "params.yaml")
        for _ in range(2):
            start = time.monotonic()
            results.append(run_local(work, text, f"s3://{BUCKET}/products", runner="docker", image=image["tag"],
                                     environment=code_env))
            seconds.append(time.monotonic() - start)
    print(f"pipeline in containers: first run {seconds[0]:.0f} s, second run {seconds[1]:.0f} s")
    return results


def test_first_run_trains_and_registers_in_containers(runs, mlflow_url, code_env, s3_endpoint, image):
    from mlflow import MlflowClient

    first = runs[0]
    assert first.retrained and "**Retrain**" in first.check_summary
    run = first.run_dir
    assert (run / "train" / "generator" / "generator.safetensors").is_file()
    assert (run / "evaluate" / "evaluation" / "metrics.json").is_file()
    assert "registration" in (run / "register" / "decision").read_text()
    # every artifact was written by the image's non-root user, inside the pipeline root KFP gave the steps
    owners = {p.stat().st_uid for p in run.rglob("*")}
    assert owners == {10001}, owners
    # credentials came from the environment only: no step wrote them into an artifact
    for path in (p for p in run.rglob("*") if p.is_file() and p.stat().st_size < 5_000_000):
        assert S3_SECRET.encode() not in path.read_bytes(), path

    ingest_out = json.loads((run / "ingest" / "executor_output.json").read_text())
    version = ingest_out["parameterValues"]["dataset_version"]
    client = MlflowClient(tracking_uri=mlflow_url)
    (mv,) = client.search_model_versions("name = 'product-gan'")
    code = code_env.get("PRODUCTGAN_GIT_COMMIT") or commit_of_tree()
    assert mv.tags["dataset_version"] == version and mv.tags["git_commit"] == code
    assert client.get_model_version_by_alias("product-gan", "champion").version == mv.version

    # the model's files went through the server to S3
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=S3_KEY_ID,
                      aws_secret_access_key=S3_SECRET, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="mlflow/").get("Contents", [])]
    assert any(k.endswith("generator.safetensors") for k in keys), keys[:20]


def test_second_run_ends_at_the_retrain_check(runs, mlflow_url):
    from mlflow import MlflowClient

    second = runs[1]
    assert not second.retrained, second.check_summary
    assert "**Nothing to do**" in second.check_summary
    assert second.run_dir != runs[0].run_dir and not (second.run_dir / "train").exists()
    assert len(MlflowClient(tracking_uri=mlflow_url).search_model_versions("name = 'product-gan'")) == 1
    leftover = podman("ps", "-a", "--filter", "label=io.productgan.run-local", "--format", "{{.ID}}").stdout
    assert not leftover.strip(), "kfp.local removes step containers when they exit"


def test_the_image_serves_the_champion(image, runs, mlflow_url):
    """`mlflow models serve` of models:/product-gan@champion inside the image answers this host."""
    from PIL import Image

    port = free_port()
    name = f"productgan-test-serve-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--network", "host", "-e", f"MLFLOW_TRACKING_URI={mlflow_url}",
           image["tag"], "mlflow", "models", "serve", "-m", "models:/product-gan@champion", "--env-manager",
           "local", "--host", "127.0.0.1", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/ping", "mlflow models serve in the image", 180,
                           lambda: podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true",
                           lambda: podman("logs", name, check=False).stdout, interval_s=1)
        body = json.dumps({"dataframe_records": [{"category": "Sneaker", "seed": 3, "n": 2}]}).encode()
        request = urllib.request.Request(f"{url}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as resp:
            rows = json.loads(resp.read())["predictions"]
    finally:
        podman("rm", "-f", name, check=False)
    assert [(r["category"], r["seed"], r["index"]) for r in rows] == [("Sneaker", 3, 0), ("Sneaker", 3, 1)]
    pictures = [Image.open(io.BytesIO(base64.b64decode(r["image"]))) for r in rows]
    assert [(p.format, p.size) for p in pictures] == [("PNG", (28, 28))] * 2


def test_run_local_docker_names_a_missing_image(tmp_path, cli_env, fmnist_dir):
    """The CLI path: a tag the engine does not have gets a message that says how to build it."""
    env = {**cli_env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "PRODUCTGAN_FASHION_MNIST": str(fmnist_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "productgan", "pipeline", "run-local", "--runner", "docker", "--image",
         "localhost/productgan:no-such-tag", "--workdir", str(tmp_path), "--per-category", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "localhost/productgan:no-such-tag" in result.stderr and "make image TORCH=cpu" in result.stderr
