"""A cross-process lock for alias moves, built on the one atomic counter MLflow offers: version numbers.

MLflow has no compare-and-set on aliases or tags, and a tag used as a lease ("write, then re-read") lets two
writers both believe they won. Version numbers are different: the store hands them out under a unique
(name, version) constraint, so every contender gets a distinct, increasing ticket. The lock is a queue of
tickets (versions of a companion registered model ``<model>.promotion-lock``): a contender holds the lock
when no lower live ticket remains. Release deletes the ticket. A ticket older than its lease (its holder
died) is deleted by the next waiter. Works the same on SQLite and on a tracking server.

A live contender keeps its ticket alive from a heartbeat thread: every ``lease_s / 3`` it raises the ticket's
``beat`` tag, a counter. A waiter presumes a ticket dead when it has seen the same ``beat`` for the ticket's
``lease_s`` by its *own* monotonic clock, so no two machines' clocks need agree (a ticket carries no
timestamp); the price is that a waiter new to a dead ticket waits one lease before removing it.

A process that stalls as a whole (SIGSTOP, a VM pause, swapping) stops its heartbeat too, and after
``lease_s`` another process may delete its ticket and take the lock. So ``check()``, called before every write
made under the lock, refuses (``LockLost``) unless the ticket is still in the registry with our owner tag and
at least a quarter of its lease is left, counted from when the last renewal that succeeded was *sent* (no
waiter can have seen that beat earlier): a stale holder is told that it lost the lock instead of writing over
the new holder. (A stall longer than that quarter between ``check()`` and the write itself is the one window
left: MLflow offers no compare-and-set to close it.) Any failure while waiting (an outage, an interrupt)
removes the ticket and stops the heartbeat before it is raised.
"""

from __future__ import annotations

import getpass
import logging
import os
import random
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


class LockTimeout(TimeoutError):
    pass


class LockLost(LockTimeout):
    """This process held the lock, but its lease ran out (it stalled) and another process may hold it now."""


def lock_model_name(model_name: str) -> str:
    return f"{model_name}.promotion-lock"


def whoami() -> str:
    """Who is acting, for the records: the MLflow user if set, else the OS user, and the host."""
    try:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _is_error(exc: Exception, *codes: str) -> bool:
    return getattr(exc, "error_code", None) in codes


class PromotionLock:
    """``with PromotionLock(client, "product-gan"):`` -- only one holder at a time across processes."""

    def __init__(
        self, client: Any, model_name: str, lease_s: float = 120.0, timeout_s: float = 900.0, poll_s: float = 0.25
    ) -> None:
        self.client = client
        self.name = lock_model_name(model_name)
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.ticket: int | None = None
        self.owner = ""
        self.beat = 0  # the ticket's heartbeat counter, as last written
        self.renewed_at = 0.0  # time.monotonic() when the last renewal that succeeded was sent
        self.lost: str | None = None  # why the heartbeat found the ticket gone
        self._stop_heartbeat: threading.Event | None = None
        self._seen: dict[str, tuple[str, float]] = {}  # other tickets: version -> (beat, monotonic time first seen)

    def _ensure_queue(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                self.name, description="productgan promotion lock: each version is a ticket; do not edit"
            )
        except MlflowException as exc:
            if not _is_error(exc, "RESOURCE_ALREADY_EXISTS"):
                raise

    def acquire(self) -> PromotionLock:
        from mlflow.exceptions import MlflowException

        self.owner = f"{whoami()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost, self.beat, self._seen = None, 0, {}
        tags = {"owner": self.owner, "beat": "0", "lease_s": f"{self.lease_s:g}"}
        self.renewed_at = time.monotonic()
        try:
            ticket = self.client.create_model_version(self.name, source=f"lock:///{self.name}", tags=tags)
        except MlflowException as exc:
            # the first lock ever taken for this model: create its queue (with basic auth an ordinary user is
            # told PERMISSION_DENIED for a model that does not exist yet; it manages the queue it creates)
            if not _is_error(exc, "RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED"):
                raise
            self._ensure_queue()
            ticket = self.client.create_model_version(self.name, source=f"lock:///{self.name}", tags=tags)
        self.ticket = int(ticket.version)
        self._start_heartbeat()
        try:
            return self._wait()
        except BaseException:  # a lost wait (outage, timeout, interrupt) leaves no ticket and no heartbeat behind
            ticket = self.ticket
            try:
                self.release()
            except Exception as exc:  # the heartbeat has stopped: the ticket expires after its lease
                log.warning("promotion lock: could not remove ticket %s (%s); it expires after %g s", ticket, exc,
                            self.lease_s)
            raise

    def _wait(self) -> PromotionLock:
        from mlflow.exceptions import MlflowException

        deadline = time.monotonic() + self.timeout_s
        while True:
            tickets = self.client.search_model_versions(f"name='{self.name}'")
            if not any(int(v.version) == self.ticket for v in tickets):  # we stalled while waiting
                ticket, self.ticket = self.ticket, None
                raise self._lost(f"ticket {ticket} was deleted by another process while this one waited")
            ahead = [v for v in tickets if int(v.version) < self.ticket]
            live = []
            for v in ahead:
                if self._expired(v):
                    log.warning("promotion lock: ticket %s of %s stopped beating; removing it", v.version,
                                v.tags.get("owner"))
                    try:
                        self.client.delete_model_version(self.name, v.version)
                    except MlflowException as exc:
                        if not _is_error(exc, "RESOURCE_DOES_NOT_EXIST"):
                            raise
                else:
                    live.append(v)
            if not live:
                return self
            if time.monotonic() > deadline:
                holder = min(live, key=lambda v: int(v.version))
                raise LockTimeout(
                    f"waited {self.timeout_s:.0f}s for the promotion lock of {self.name!r}, held by "
                    f"{holder.tags.get('owner')} (ticket {holder.version}); retry later, or delete that version of "
                    f"{self.name!r} if its owner is gone"
                )
            # waiters further back poll less often, so the holder's requests are not crowded out
            time.sleep(min(2.0, self.poll_s * len(live)) * (0.5 + random.random()))

    def _expired(self, version: Any) -> bool:
        """Whether ``version``'s beat has stood still for its lease, as this process's monotonic clock counts."""
        beat = str(version.tags.get("beat", ""))
        now = time.monotonic()
        seen = self._seen.get(str(version.version))
        if seen is None or seen[0] != beat:
            self._seen[str(version.version)] = (beat, now)
            return False
        try:
            lease = float(version.tags.get("lease_s") or self.lease_s)
        except ValueError:
            lease = self.lease_s
        return now - seen[1] > lease

    def _renew(self) -> None:
        ticket = self.ticket
        if ticket is None:
            return
        sent = time.monotonic()  # a waiter sees the new beat no earlier than this: the lease counts from here
        self.client.set_model_version_tag(self.name, str(ticket), "beat", str(self.beat + 1))
        self.beat += 1
        self.renewed_at = sent  # only once the registry has it

    def _start_heartbeat(self) -> None:
        from mlflow.exceptions import MlflowException

        stop = self._stop_heartbeat = threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease_s / 3):
                try:
                    self._renew()
                except MlflowException as exc:
                    if _is_error(exc, "RESOURCE_DOES_NOT_EXIST") and not stop.is_set():
                        self.lost = f"ticket {self.ticket} was deleted by another process"
                        return
                    log.warning("promotion lock: could not renew the lease of ticket %s: %s", self.ticket, exc)
                except Exception as exc:  # a tracking-server outage: check() refuses once the lease runs low
                    log.warning("promotion lock: could not renew the lease of ticket %s: %s", self.ticket, exc)

        threading.Thread(target=beat, name=f"lease-{self.name}", daemon=True).start()

    def _lost(self, why: str) -> LockLost:
        return LockLost(
            f"lost the promotion lock of {self.name!r}: {why}. This process stalled longer than the lease "
            f"(register.lock_lease_s = {self.lease_s:g} s) and another process may have taken the lock, so nothing "
            "more was written. Re-run the same command: it picks up where this one stopped."
        )

    def check(self) -> None:
        """Call before every write made under the lock: raises LockLost unless the lock is still ours."""
        from mlflow.exceptions import MlflowException

        if self.ticket is None:
            raise self._lost("it is not held (released, or never acquired)")
        if self.lost:
            raise self._lost(self.lost)
        left = self.renewed_at + self.lease_s - time.monotonic()
        if left < self.lease_s / 4:  # the heartbeat stalled or failed: a waiter may delete the ticket any moment
            raise self._lost(f"only {left:.1f} s of its lease were left (the heartbeat did not renew it)")
        try:
            ticket = self.client.get_model_version(self.name, str(self.ticket))
        except MlflowException as exc:
            if _is_error(exc, "RESOURCE_DOES_NOT_EXIST"):
                raise self._lost(f"ticket {self.ticket} was deleted by another process") from exc
            raise
        if ticket.tags.get("owner") != self.owner:
            raise self._lost(f"ticket {self.ticket} now belongs to {ticket.tags.get('owner')}")

    def release(self) -> None:
        from mlflow.exceptions import MlflowException

        if self._stop_heartbeat is not None:
            self._stop_heartbeat.set()
        if self.ticket is None:
            return
        ticket, self.ticket = self.ticket, None
        try:
            self.client.delete_model_version(self.name, str(ticket))
        except MlflowException as exc:
            if not _is_error(exc, "RESOURCE_DOES_NOT_EXIST"):
                raise

    def __enter__(self) -> PromotionLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
