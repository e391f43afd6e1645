"""The promotion lock when a holder outlives its lease: a stalled holder is told it lost the lock and writes
nothing over the next holder; a live holder doing long work under the lock keeps it (heartbeat)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from registry_helpers import fake_scorer, make_candidate

from productgan.registry import promote as promotion
from productgan.registry import store
from productgan.registry.config import RegisterConfig
from productgan.registry.lock import LockLost, PromotionLock, lock_model_name
from productgan.registry.register import register_generator

LEASE_S = 2.0


@pytest.fixture()
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    return store.client()


class StalledProcess:
    """A client through which a whole process stalls (all its threads, the lock's heartbeat too) right after
    ``method`` returns, until ``resume`` is set: what SIGSTOP, a VM pause or heavy swapping does."""

    def __init__(self, client: Any, method: str) -> None:
        self._client, self._method = client, method
        self.stalled, self.resume = threading.Event(), threading.Event()

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._client, attr)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.stalled.is_set():
                self.resume.wait(120)
            out = target(*args, **kwargs)
            if attr == self._method and not self.stalled.is_set():
                self.stalled.set()
                self.resume.wait(120)
            return out

        return call


def _register(root: Path, fd: float, seed: int, cfg: RegisterConfig) -> str:
    gen, metrics = make_candidate(root, {"fd_domain": fd, "class_accuracy": 0.8}, seed=seed)
    (root / "prepared").mkdir(exist_ok=True)
    return register_generator(gen, metrics, data_dir=root / "prepared", cfg=cfg, scorer=fake_scorer)["version"]


def test_stalled_holder_loses_the_lock_and_writes_nothing_over_the_next_holder(sqlite_store, tmp_path):
    c = sqlite_store
    cfg = RegisterConfig(model_name="stale-holder", lock_lease_s=LEASE_S, lock_timeout_s=60)
    v1 = _register(tmp_path / "c1", 5.0, 1, cfg)  # champion
    v2 = _register(tmp_path / "c2", 10.0, 2, cfg)  # worse: kept
    v3 = _register(tmp_path / "c3", 11.0, 3, cfg)  # worse: kept
    assert promotion.aliases(c, cfg.model_name)["champion"] == v1

    # A promotes v2 by hand and stalls right after moving the alias, before it records the move
    stalled = StalledProcess(c, "set_registered_model_alias")
    outcome: dict[str, BaseException | dict] = {}

    def holder_a() -> None:
        try:
            outcome["a"] = promotion.promote_version(stalled, cfg, v2, reason="A")
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome["a"] = exc

    a = threading.Thread(target=holder_a)
    a.start()
    assert stalled.stalled.wait(60)
    time.sleep(LEASE_S * 1.3)  # A's lease runs out while it is stalled

    # B takes the lock (A's ticket has expired) and promotes v3
    b = promotion.promote_version(c, cfg, v3, reason="B")
    assert b["changed"] and b["previous"] == v2  # B saw the alias A had moved

    stalled.resume.set()  # A wakes up and goes on writing
    a.join(60)
    assert isinstance(outcome["a"], LockLost), outcome["a"]
    assert "lost the promotion lock" in str(outcome["a"]) and "Re-run" in str(outcome["a"])

    # one champion, and its history unbroken: A's half move is recorded as recovered, then B's move
    assert promotion.aliases(c, cfg.model_name)["champion"] == v3
    history = promotion.history(c, cfg.model_name)
    assert [(e["version"], e["action"]) for e in history] == [(v1, "auto"), (v2, "recovered"), (v3, "manual")]
    assert "champion.event" not in c.get_model_version(cfg.model_name, v2).tags  # A wrote nothing after the stall
    assert not c.search_model_versions(f"name='{lock_model_name(cfg.model_name)}'")  # no ticket left behind


def test_live_holder_keeps_the_lock_through_long_work(sqlite_store):
    c = sqlite_store
    name = "long-work"
    c.create_registered_model(name)
    order: list[str] = []

    def waiter() -> None:
        with PromotionLock(c, name, lease_s=LEASE_S, timeout_s=60, poll_s=0.05):
            order.append("waiter")

    with PromotionLock(c, name, lease_s=LEASE_S, timeout_s=60) as held:
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(LEASE_S * 2)  # scoring under the lock, longer than the lease; the heartbeat renews it
        held.check()  # still ours
        order.append("holder")
    t.join(60)
    assert order == ["holder", "waiter"]
    assert not c.search_model_versions(f"name='{lock_model_name(name)}'")


def test_history_reconciled_to_the_champion_alias():
    entry = {"action": "auto", "at": "t", "by": "x"}
    h = [{"version": "1", **entry}, {"version": "2", **entry}]
    assert promotion.reconciled_history(h, "2") == h
    assert promotion.reconciled_history(h, "1") == h[:1]  # a move recorded whose alias never changed
    assert [e["version"] for e in promotion.reconciled_history(h, "3")] == ["1", "2", "3"]  # alias moved, no record
    assert promotion.reconciled_history([], None) == []


class LosesItsWait:
    """A client whose second ``search_model_versions`` fails (the tracking server went away mid-wait)."""

    def __init__(self, client: Any) -> None:
        self._client, self.searches = client, 0

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._client, attr)

    def search_model_versions(self, *args: Any, **kwargs: Any) -> Any:
        self.searches += 1
        if self.searches == 2:
            raise ConnectionError("tracking server unreachable")
        return self._client.search_model_versions(*args, **kwargs)


def test_a_lost_wait_leaves_no_ticket_behind(sqlite_store):
    """A waiter whose wait fails removes its ticket and stops its heartbeat, so the next contender gets the
    lock as soon as the holder releases it, not after the orphan's lease or its own timeout."""
    c = sqlite_store
    name = "lost-wait"
    c.create_registered_model(name)
    holder = PromotionLock(c, name, lease_s=LEASE_S, timeout_s=60).acquire()
    failing = LosesItsWait(c)
    with pytest.raises(ConnectionError):
        PromotionLock(failing, name, lease_s=LEASE_S, timeout_s=60, poll_s=0.05).acquire()
    assert [int(v.version) for v in c.search_model_versions(f"name='{lock_model_name(name)}'")] == [holder.ticket]
    holder.release()
    start = time.monotonic()
    with PromotionLock(c, name, lease_s=LEASE_S, timeout_s=4 * LEASE_S, poll_s=0.05):
        assert time.monotonic() - start < LEASE_S  # no orphan ahead of it, kept alive by a heartbeat
    assert not c.search_model_versions(f"name='{lock_model_name(name)}'")


SKEWED_HOLDER = """
import sys, time
real = time.time
time.time = lambda: real() - 3600  # this machine's clock is an hour behind
from productgan.registry import store
from productgan.registry.lock import PromotionLock
lock = PromotionLock(store.client(), sys.argv[1], lease_s=float(sys.argv[2]), timeout_s=60).acquire()
print("held", flush=True)
time.sleep(3 * float(sys.argv[2]))
lock.check()  # still ours: nobody took it while the lease was kept
open(sys.argv[3], "w").close()  # about to release
lock.release()
print("released", flush=True)
"""


def test_lease_expiry_does_not_depend_on_the_machines_clocks(sqlite_store, tmp_path, cli_env):
    """A holder whose clock is an hour behind keeps the lock while its heartbeat runs: a waiter on another
    machine judges the lease by the ticket's beat and its own clock, never by the holder's timestamps."""
    c = sqlite_store
    name = "skewed-clock"
    c.create_registered_model(name)
    env = {**cli_env, "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    releasing = tmp_path / "releasing"
    holder = subprocess.Popen([sys.executable, "-c", SKEWED_HOLDER, name, str(LEASE_S), str(releasing)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        with PromotionLock(c, name, lease_s=LEASE_S, timeout_s=60, poll_s=0.05):
            took_it_while_held = not releasing.exists()
        out, err = holder.communicate(timeout=60)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert holder.returncode == 0 and out.strip() == "released", err[-3000:]
    assert not took_it_while_held
