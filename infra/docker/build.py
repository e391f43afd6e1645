#!/usr/bin/env python3
"""`make image`: build infra/docker/Dockerfile with podman (or docker), tagged with the git commit; print the
tag, the size and the build time.

  python3 infra/docker/build.py [--torch cuda|cpu] [--image NAME] [--base auto|registry|local] [--push]

Tag: NAME:<commit 12>[-dirty][-cpu] (NAME default localhost/productgan; for a registry e.g.
ghcr.io/ORG/productgan). A tree with uncommitted changes builds as <commit>-dirty, which the retrain check
never takes for known code.

Base images: a machine that reaches a container registry uses the Dockerfile's pinned bases (python:3.11 slim,
debian:12 slim). One that reaches only package registries (this project's CI) builds a Debian 12 base with
mmdebstrap from the mirror lines of its own apt sources (Python 3.11.2, pip, venv, CA certificates), imports it
as localhost/productgan-base:bookworm-<hash> (reused while the inputs stay the same) and passes it as the
build's BASE_IMAGE and DEBIAN_IMAGE; pip in that build reaches PyPI through the host's CA bundle, mounted
read-only for the build only (nothing of it stays in the image).

--torch cpu: a CPU torch wheel of the locked version found on this machine ($TORCH_WHEEL, else
/opt/wheels/torch-<version>+cpu-cp311-*.whl) is copied into infra/docker/wheels/ (git-ignored build context)
and installed from there; without one the build takes it from PyTorch's CPU index.

Standard library only (runs with the system python3 before any virtualenv exists).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from pipelines.engine import EngineError, engine, engine_env  # noqa: E402 (after the path set-up)

DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
IGNOREFILE = REPO / "infra" / "docker" / "Dockerfile.dockerignore"
WHEELS = REPO / "infra" / "docker" / "wheels"
DEFAULT_IMAGE = "localhost/productgan"
BASE_NAME = "localhost/productgan-base"
SUITE = "bookworm"  # Debian 12: Python 3.11, what the Dockerfile checks for
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
# Docs, manuals and translations are left out of the base, as in Debian's slim images.
DPKG_OPTS = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/locale/*", "path-exclude=/usr/share/doc/*",
             "path-include=/usr/share/doc/*/copyright")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
REGISTRY_PROBE = "https://registry-1.docker.io/v2/"
FALLBACK_MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)


class BuildError(RuntimeError):
    pass


def say(message: str) -> None:
    print(f">> {message}", flush=True)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def git_commit() -> str:
    """HEAD with ``-dirty`` for uncommitted changes to tracked files: the convention of
    productgan.lineage.git_commit (which an environment variable may override; a build must not)."""
    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"make image: the image is tagged with the git commit, but git failed in {REPO}: {exc}. "
                         "Build from a git checkout") from exc
    return f"{sha}-dirty" if dirty else sha


def image_tag(name: str, commit: str, torch: str) -> str:
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    return f"{name}:{short}{'-cpu' if torch == 'cpu' else ''}"


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, env=engine_env(), **kwargs)


def image_exists(tool: str, ref: str) -> bool:
    cmd = [tool, "image", "exists", ref] if tool == "podman" else [tool, "image", "inspect", ref]
    return subprocess.run(cmd, env=engine_env(), capture_output=True).returncode == 0


def image_size(tool: str, ref: str) -> int:
    out = subprocess.run([tool, "image", "inspect", "--format", "{{.Size}}", ref], env=engine_env(),
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def registry_reachable(timeout: float = 5.0) -> bool:
    """Any HTTP answer of Docker Hub's registry API (401 is the normal one) means the pinned bases can be pulled."""
    try:
        urllib.request.urlopen(REGISTRY_PROBE, timeout=timeout)  # noqa: S310 (a fixed https URL)
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
    return True


def apt_mirror_lines(root: Path = Path("/")) -> list[str]:
    """``deb URI SUITE COMPONENTS`` for this machine's Debian 12 apt sources (one-line and deb822 files)."""
    lines: list[str] = []
    files = [root / "etc/apt/sources.list", *sorted((root / "etc/apt/sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for raw in stanza.splitlines():
                    if raw.startswith("#") or ":" not in raw or raw[:1].isspace():
                        continue
                    key, value = raw.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
                if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    for suite in fields.get("suites", "").split():
                        lines.append(f"deb {uri} {suite} {fields.get('components', 'main')}")
        elif path.name == "sources.list" or path.suffix == ".list":
            for raw in text.splitlines():
                raw = re.sub(r"\[[^]]*\]", "", raw.split("#", 1)[0]).split()
                if len(raw) >= 3 and raw[0] == "deb":
                    lines.append(" ".join(raw))
    ours = [line for line in lines if line.split()[2].split("-")[0] == SUITE]
    return list(dict.fromkeys(ours))


def local_base(tool: str) -> str:
    """localhost/productgan-base:bookworm-<hash of its inputs>, made with mmdebstrap unless it exists."""
    if tool != "podman":
        raise BuildError("make image: the local Debian base (no container registry reachable) needs podman, which "
                         "mounts the host's CA bundle into the build; apt-get install podman runc mmdebstrap")
    mirrors = apt_mirror_lines() or list(FALLBACK_MIRRORS)
    cmd = ["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
           *[f"--dpkgopt={o}" for o in DPKG_OPTS],
           # pip installs into the image's own Python (as in python:3.11 images), not a venv
           "--customize-hook=rm -f \"$1\"/usr/lib/python3.11/EXTERNALLY-MANAGED", SUITE]
    digest = hashlib.sha256("\n".join(cmd + mirrors).encode()).hexdigest()[:12]
    tag = f"{BASE_NAME}:{SUITE}-{digest}"
    if image_exists(tool, tag):
        say(f"base image {tag} (reused)")
        return tag
    if not shutil.which("mmdebstrap"):
        raise BuildError("make image: no container registry reachable, so the base is made locally from Debian "
                         "packages, which needs mmdebstrap: apt-get install mmdebstrap")
    say(f"base image {tag}: mmdebstrap of Debian 12 from {'; '.join(mirrors)}")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="productgan-base-", dir="/var/tmp") as tmp:
        tar = Path(tmp) / "base.tar"
        run([*cmd[:-1], "--quiet", SUITE, str(tar), *mirrors])
        run([tool, "import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", 'CMD ["/bin/bash"]', str(tar), tag], stdout=subprocess.DEVNULL)
    say(f"base image {tag} made in {time.monotonic() - start:.0f} s")
    return tag


def locked_torch_version() -> str:
    match = re.search(r"^torch==([^\s#]+)", (REPO / "requirements.lock").read_text(), re.M)
    if not match:
        raise BuildError("requirements.lock pins no torch==VERSION")
    return match.group(1)


def stage_wheels(torch: str) -> str | None:
    """Fill infra/docker/wheels/ (emptied first) with the local CPU torch wheel for a cpu build."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    for old in WHEELS.glob("*.whl"):
        old.unlink()
    if torch != "cpu":
        return None
    version = locked_torch_version()
    wanted = os.environ.get("TORCH_WHEEL") or ""
    found = [wanted] if wanted else sorted(glob.glob(f"/opt/wheels/torch-{version}+cpu-cp311-cp311-*.whl"))
    if not found:
        say(f"no local CPU wheel of torch {version}: the build takes it from PyTorch's CPU index")
        return None
    source = Path(found[-1])
    if not source.is_file():
        raise BuildError(f"TORCH_WHEEL={source}: no such file")
    target = WHEELS / source.name
    try:
        os.link(source, target)  # same file system: no 200 MB copy
    except OSError:
        shutil.copy2(source, target)
    say(f"torch CPU wheel from the build context: infra/docker/wheels/{source.name}")
    return source.name


def build(torch: str, name: str, base: str, extra_args: list[str], commit: str | None = None) -> str:
    tool = engine()
    commit = git_commit() if commit is None else commit
    tag = image_tag(name, commit or "no-commit", torch)
    args = ["--build-arg", f"GIT_COMMIT={commit}", "--build-arg", f"TORCH={torch}"]
    mounts: list[str] = []
    if base == "auto":
        base = "registry" if registry_reachable() else "local"
        why = "a container registry answers" if base == "registry" else "no container registry reachable"
        say(f"base: {base} ({why})")
    if base == "local":
        base_tag = local_base(tool)
        args += ["--build-arg", f"BASE_IMAGE={base_tag}", "--build-arg", f"DEBIAN_IMAGE={base_tag}"]
        if HOST_CA.is_file():  # pip in the build trusts what this machine trusts (e.g. an egress proxy's CA)
            mounts = ["-v", f"{HOST_CA}:{HOST_CA}:ro"]
    stage_wheels(torch)
    if tool == "podman":
        cmd = [tool, "build", "--layers", "--ignorefile", str(IGNOREFILE), *mounts]
    else:
        cmd = [tool, "build"]
        os.environ.setdefault("DOCKER_BUILDKIT", "1")
    cmd += ["-f", str(DOCKERFILE), *args, *extra_args, "-t", tag, str(REPO)]
    say(f"building {tag} (torch {torch}, {tool}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    start = time.monotonic()
    try:
        run(cmd)
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"make image: `{tool} build` failed (exit {exc.returncode}); its output is above") from exc
    finally:
        for wheel in WHEELS.glob("*.whl"):
            wheel.unlink()
    seconds = time.monotonic() - start
    size = image_size(tool, tag)
    print(f"image: {tag}")
    print(f"size:  {size / 1e6:.0f} MB ({size} bytes)")
    print(f"built in {seconds:.0f} s (load average now {os.getloadavg()[0]:.1f})")
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch", choices=("cuda", "cpu"), default=os.environ.get("TORCH") or "cuda")
    parser.add_argument("--image", default=os.environ.get("IMAGE") or DEFAULT_IMAGE, help="image name, no tag")
    parser.add_argument("--base", choices=("auto", "registry", "local"), default=os.environ.get("BASE") or "auto")
    parser.add_argument("--git-commit", default=None, help="the code version the image records (default: git HEAD, "
                        "with -dirty for uncommitted changes); the build refuses an empty one or 'unknown'")
    parser.add_argument("--push", action="store_true", help="push the tag of this commit (build it first)")
    parser.add_argument("--print-tag", action="store_true", help="print the tag this commit builds as; build nothing")
    parser.add_argument("build_args", nargs="*", help="more arguments for `podman build` / `docker build` (after --)")
    opts = parser.parse_args(argv)
    try:
        if opts.print_tag:
            print(image_tag(opts.image, git_commit(), opts.torch))
            return 0
        if opts.push:
            tag = image_tag(opts.image, git_commit(), opts.torch)
            if not image_exists(engine(), tag):
                raise BuildError(f"make push: {tag} is not built; run `make image IMAGE={opts.image}` first")
            run([engine(), "push", tag])
            print(f"pushed: {tag}  (set params.yaml pipeline.image to it, or pass --image)")
            return 0
        build(opts.torch, opts.image, opts.base, opts.build_args, opts.git_commit)
    except (BuildError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
