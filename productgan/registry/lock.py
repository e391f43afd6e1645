"""A cross-process lock for alias moves, built on the one atomic counter MLflow offers: version numbers.

MLflow has no compare-and-set on aliases or tags, and a tag used as a lease ("write, then re-read") lets two
writers both believe they won. Version numbers are different: the store hands them out under a unique
(name, version) constraint, so every contender gets a distinct, increasing ticket. The lock is a queue of
tickets (versions of a companion registered model ``<model>.promotion-lock``): a contender holds the lock
when no lower live ticket remains. Release deletes the ticket. A ticket older than its lease (its holder
died) is deleted by the next waiter. Works the same on SQLite and on a tracking server.
"""

from __future__ import annotations

import getpass
import logging
import os
import random
import socket
import time
import uuid
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


class LockTimeout(TimeoutError):
    pass


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
        self.expires_at = 0.0

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

        self.expires_at = time.time() + self.lease_s
        owner = f"{whoami()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        tags = {"owner": owner, "expires_at": f"{self.expires_at:.3f}"}
        try:
            ticket = self.client.create_model_version(self.name, source=f"lock:///{self.name}", tags=tags)
        except MlflowException as exc:  # the first lock ever taken for this model: create its queue
            if not _is_error(exc, "RESOURCE_DOES_NOT_EXIST"):
                raise
            self._ensure_queue()
            ticket = self.client.create_model_version(self.name, source=f"lock:///{self.name}", tags=tags)
        self.ticket = int(ticket.version)
        deadline = time.monotonic() + self.timeout_s
        while True:
            tickets = self.client.search_model_versions(f"name='{self.name}'")
            ahead = [v for v in tickets if int(v.version) < self.ticket]
            live = []
            for v in ahead:
                if float(v.tags.get("expires_at", "0") or 0) < time.time():
                    log.warning("promotion lock: ticket %s of %s expired; removing it", v.version, v.tags.get("owner"))
                    try:
                        self.client.delete_model_version(self.name, v.version)
                    except MlflowException as exc:
                        if not _is_error(exc, "RESOURCE_DOES_NOT_EXIST"):
                            raise
                else:
                    live.append(v)
            if not live:  # our lease has at least lease_s / 2 left: waiters renew it at half-time
                return self
            if time.monotonic() > deadline:
                holder = min(live, key=lambda v: int(v.version))
                self.release()
                raise LockTimeout(
                    f"waited {self.timeout_s:.0f}s for the promotion lock of {self.name!r}, held by "
                    f"{holder.tags.get('owner')} (ticket {holder.version}); retry later, or delete that version of "
                    f"{self.name!r} if its owner is gone"
                )
            if self.expires_at - time.time() < self.lease_s / 2:
                self._renew()  # a waiter is alive: keep our place in the queue
            # waiters further back poll less often, so the holder's requests are not crowded out
            time.sleep(min(2.0, self.poll_s * len(live)) * (0.5 + random.random()))

    def _renew(self) -> None:
        self.expires_at = time.time() + self.lease_s
        self.client.set_model_version_tag(self.name, str(self.ticket), "expires_at", f"{self.expires_at:.3f}")

    def check(self) -> None:
        """Call before a write: refuses to act on a lease that has run out (another process may now hold it)."""
        if self.ticket is None or time.time() > self.expires_at:
            raise LockTimeout(f"the promotion lock lease on {self.name!r} ran out; nothing was changed")

    def release(self) -> None:
        from mlflow.exceptions import MlflowException

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
