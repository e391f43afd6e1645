"""pipelines.local_server: waiting for a server on this machine and stopping it, with real processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.local_server import free_port, stop_process_group, wait_until_answers


def test_a_server_that_answers_is_waited_for_and_its_group_stopped(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/", "http.server", 60, lambda: proc.poll() is None)
    finally:
        stop_process_group(proc, grace_s=10)
    assert proc.returncode is not None
    stop_process_group(proc)  # stopping a stopped server is a no-op


def test_a_server_that_exits_first_is_named_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "print('port already taken'); raise SystemExit(3)"],
                                stdout=out, stderr=subprocess.STDOUT)
        proc.wait()
    with pytest.raises(RuntimeError, match=r"(?s)my server exited before it answered .*port already taken"):
        wait_until_answers(f"http://127.0.0.1:{free_port()}/", "my server", 60, lambda: proc.poll() is None,
                           log.read_text)


def test_a_server_that_never_answers_times_out_with_its_log():
    with pytest.raises(ValueError, match=r"(?s)did not answer .* within 0 s:\nstill starting"):
        wait_until_answers(f"http://127.0.0.1:{free_port()}/", "slow server", 0, lambda: True,
                           lambda: "still starting", error=ValueError)
