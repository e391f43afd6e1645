"""make image's helpers and the containerized run's environment, without a container engine: the Debian 12
mirror lines taken from apt sources, the image tag, and what a step container may receive."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build():
    sys.path.insert(0, str(REPO / "infra" / "docker"))
    try:
        import build as module
    finally:
        sys.path.pop(0)
    return module


def test_mirror_lines_come_from_the_machines_debian_12_sources(build, tmp_path):
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# old style\ndeb [arch=amd64] http://mirror.example/debian bookworm main contrib\n"
        "deb-src http://mirror.example/debian bookworm main\ndeb https://packages.cloud.google.com/apt "
        "cloud-sdk-bookworm main\n"
    )
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    (apt / "sources.list.d" / "node.sources.disabled").write_text(
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: bookworm\nComponents: main\n"
    )
    assert build.apt_mirror_lines(tmp_path) == [
        "deb http://mirror.example/debian bookworm main contrib",
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]


def test_image_tag_names_the_commit_and_the_flavour(build):
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert build.image_tag("localhost/productgan", sha, "cuda") == "localhost/productgan:0123456789ab"
    assert build.image_tag("ghcr.io/o/productgan", sha, "cpu") == "ghcr.io/o/productgan:0123456789ab-cpu"
    assert build.image_tag("p", f"{sha}-dirty", "cpu") == "p:0123456789ab-dirty-cpu"


def test_steps_get_the_cluster_variables_and_nothing_else():
    from pipelines.containers import ContainerRunError, check_tracking_uri, step_environment
    from pipelines.product_gan import CONFIG_KEYS, MLFLOW_KEYS, S3_KEYS

    host = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
            "HOME": "/root", "GITHUB_TOKEN": "never", "AWS_SESSION_TOKEN": "never", "MLFLOW_TRACKING_PASSWORD": ""}
    env = step_environment({"PRODUCTGAN_GIT_COMMIT": "abc"}, env=host)
    assert env == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "AWS_ACCESS_KEY_ID": "k",
                   "AWS_SECRET_ACCESS_KEY": "s", "PRODUCTGAN_GIT_COMMIT": "abc"}
    # every variable the cluster gives a step (ConfigMap + Secrets) passes
    full = step_environment(env={k: "x" for k in (*CONFIG_KEYS, *S3_KEYS, *MLFLOW_KEYS)})
    assert set(full) == {*CONFIG_KEYS, *S3_KEYS, *MLFLOW_KEYS}
    with pytest.raises(ContainerRunError, match="need an MLflow tracking server"):
        check_tracking_uri("sqlite:///mlflow.db")
