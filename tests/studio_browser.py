"""Helpers for driving the studio as a person would: start `productgan studio` on 127.0.0.1 (a free port) and
a headless Debian Chromium through selenium. Used by tests/test_studio.py and benchmarks/bench_studio.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.local_server import free_port, stop_process_group, wait_until_answers

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# headless, and nothing that reaches out to the network (the machine is offline)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
INSTALL_HINT = "apt-get install -y chromium chromium-driver (make test does)"


def missing_browser() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: {INSTALL_HINT}"
    return None


def env_for_cli(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def start_studio(
    args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 180
) -> tuple[subprocess.Popen, str]:
    """`python -m productgan studio ARGS --port <free>`; returns (process, base URL) once /api/info answers.
    The log goes to cwd/studio.log."""
    port = free_port()
    log = open(cwd / "studio.log", "wb")  # noqa: SIM115 - the child holds it; closed when it exits
    proc = subprocess.Popen(
        [sys.executable, "-m", "productgan", "studio", *args, "--port", str(port)],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/api/info", "productgan studio", timeout, lambda: proc.poll() is None,
                           (cwd / "studio.log").read_text)
    except RuntimeError:
        stop(proc)
        raise
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    """Stop the studio this helper started (its own process group)."""
    stop_process_group(proc)


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def chromium(download_dir: Path | None = None, width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium with a fresh profile (removed at quit)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="productgan-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if download_dir is not None:
        options.add_experimental_option("prefs", {
            "download.default_directory": str(download_dir), "download.prompt_for_download": False,
        })
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    quit_driver = driver.quit

    def quit_and_clean() -> None:
        try:
            quit_driver()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    return driver


def wait_for(driver: Any, script: str, timeout: float = 60) -> Any:
    """Poll a JavaScript expression until it is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(lambda d: d.execute_script(f"return {script}"))


# The pixels of every product image as the page shows them: each <img> drawn at its natural size on a
# canvas and read back (RGBA, row-major), keyed by the image's file name, per model column.
SHOWN_PIXELS = """
const out = {};
for (const column of document.querySelectorAll('#columns .model')) {
  const images = {};
  for (const img of column.querySelectorAll('.grid img.product')) {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    images[img.dataset.name] = {w: canvas.width, h: canvas.height, rgba: Array.from(data), src: img.src};
  }
  out[column.dataset.slot] = images;
}
return out;
"""
