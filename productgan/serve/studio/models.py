"""Which generators the studio serves: the registry's champion and challenger (side by side, with their
versions and evaluation metrics), or one checkpoint folder / model URI.

Generators are loaded once per registered version (``productgan.load`` on the version's generator folder,
the same loader as ``productgan generate`` and the pyfunc model) and kept while an alias points at them.
``refresh`` re-reads the aliases; ``refresh_soon`` does that in a background thread at most every
``refresh_s`` seconds, so no request waits for the registry (or a download) and a promotion shows up on a
page reload after that.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any
from urllib.parse import urlparse

from productgan.redact import redact
from productgan.serve.api import GenerateParams, ProductGenerator, RequestError, load

log = logging.getLogger(__name__)

ALIASES = ("champion", "challenger")  # shown side by side, in this order
# models:/NAME@ALIAS or models:/NAME/VERSION (registered model names may hold spaces, dots, dashes ...)
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
# version tags shown as the version's lineage (written by productgan.registry.log.lineage_tags)
LINEAGE_TAGS = ("recipe", "train_step", "dataset_version", "git_commit", "training_run_id", "params_hash")


@dataclass
class Slot:
    """One generator on the page: ``key`` is what a request names (``champion``, ``challenger``,
    ``version 3``, ``checkpoint`` or ``model``); ``uri`` is what the page shows of its source (``shown_source``)."""

    key: str
    uri: str
    product: ProductGenerator
    version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "uri": self.uri,
            "version": self.version,
            "categories": self.product.categories,
            "resolution": self.product.config.resolution,
            "aspect": self.product.config.aspect,
            "channels": self.product.config.channels,
            **self.details,
        }


def shown_source(source: str) -> str:
    """What the page may show of where a generator came from: a URI without its credentials, a local folder
    (or ``file:`` URI) by its last name only -- its path tells who runs the studio and where."""
    scheme = urlparse(source).scheme
    if len(scheme) > 1 and scheme != "file":  # a one-letter scheme is a Windows drive
        return redact(source)
    path = urlparse(source).path if scheme == "file" else source
    return PurePath(path.rstrip("/\\")).name or "generator"


def parse_registry_uri(uri: str) -> tuple[str, str | None, str | None] | None:
    """``models:/NAME@ALIAS`` -> (NAME, ALIAS, None), ``models:/NAME/3`` -> (NAME, None, "3"), else None."""
    match = _REGISTRY_URI.match(uri.strip())
    if match is None:
        return None
    return match["name"], match["alias"], match["version"]


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def version_details(version: Any) -> dict[str, Any]:
    """What the page shows of a registered version: its evaluation metrics (``metric.*`` tags), lineage,
    the promotion decision recorded when it was registered, and when it was registered."""
    tags = dict(version.tags or {})
    metrics = {k[len("metric."):]: _finite(v) for k, v in sorted(tags.items()) if k.startswith("metric.")}
    scores = None
    if tags.get("promotion.scores"):
        try:
            scores = json.loads(tags["promotion.scores"])
        except ValueError:
            scores = None
    return {
        "metrics": metrics,
        "lineage": {k: tags[k] for k in LINEAGE_TAGS if tags.get(k)},
        "promotion": {
            "decision": tags.get("promotion.decision"),
            "reason": tags.get("promotion.reason"),
            "compared_with_version": tags.get("promotion.champion_version"),
            "scores": scores,
        },
        "registered_at_ms": int(version.creation_timestamp or 0),
    }


class Catalog:
    """The generators on the page. ``source`` is a folder (``--checkpoint``) or an MLflow model URI."""

    def __init__(self, source: str, params: GenerateParams, checkpoint: bool = False, refresh_s: float = 30.0) -> None:
        self.source = source
        self.params = params
        self.refresh_s = refresh_s
        self.registry = None if checkpoint else parse_registry_uri(source)
        self.warning: str | None = None
        self._slots: list[Slot] = []
        self._lock = threading.Lock()  # guards _slots
        self._refreshing = threading.Lock()  # one refresh at a time: a new version is downloaded once
        self._refreshed_at = time.monotonic()
        if self.registry is None:
            key = "checkpoint" if checkpoint else "model"
            self._slots = [Slot(key, shown_source(source), load(source, params=params))]
        else:
            self.refresh(strict=True)

    @property
    def model_name(self) -> str | None:
        return self.registry[0] if self.registry else None

    def slots(self) -> list[Slot]:
        with self._lock:
            return list(self._slots)

    def get(self, key: Any) -> Slot:
        slots = self.slots()
        for slot in slots:
            if slot.key == key:
                return slot
        known = ", ".join(s.key for s in slots)
        raise RequestError(f"unknown model {key!r}; this studio serves: {known}")

    def refresh(self, strict: bool = False) -> None:
        """Re-read the registry's aliases and load any version not loaded yet. A registry that cannot be
        read keeps the generators already loaded (``warning`` says why) unless ``strict`` (at start-up)."""
        if self.registry is None:
            return
        with self._refreshing:
            self._refreshed_at = time.monotonic()
            self._refresh(strict)

    def refresh_soon(self) -> None:
        """``refresh`` in a background thread when the last one began ``refresh_s`` ago or more, and none
        runs now; returns at once (the page is answered from what is loaded)."""
        if self.registry is None or time.monotonic() - self._refreshed_at < self.refresh_s:
            return
        if not self._refreshing.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self._refreshed_at = time.monotonic()
                self._refresh(strict=False)
            finally:
                self._refreshing.release()

        threading.Thread(target=run, name="studio-refresh", daemon=True).start()

    def _refresh(self, strict: bool) -> None:
        try:
            wanted = self._wanted()
            old = {s.version: s for s in self.slots()}
            slots = []
            for key, version, details in wanted:
                slot = old.get(version)
                product = slot.product if slot is not None else self._load_version(version)
                uri = f"models:/{self.model_name}/{version}"
                slots.append(Slot(key, uri, product, version, details))
        except Exception as exc:  # the registry is remote: any failure keeps what is loaded
            message = redact(f"the registry could not be read: {exc}")
            if strict:
                raise RuntimeError(message) from exc
            log.warning("studio: %s", message)
            self.warning = message
            return
        with self._lock:
            self._slots = slots
        self.warning = None

    def _wanted(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(key, version, details) for the slots to show: champion, challenger, and the version the source
        URI names if it is neither."""
        from productgan.registry import promote, store

        name, alias, version = self.registry
        client = store.client()
        aliases, _ = promote.snapshot(client, name)
        keys: list[tuple[str, str]] = [(a, aliases[a]) for a in ALIASES if a in aliases]
        if alias is not None and alias not in ALIASES:
            if alias not in aliases:
                raise RequestError(f"{self.source}: model {name!r} has no alias {alias!r}; aliases: {sorted(aliases)}")
            keys.insert(0, (alias, aliases[alias]))
        if version is not None and version not in {v for _, v in keys}:
            keys.insert(0, (f"version {version}", version))
        if not keys:
            raise RequestError(
                f"{self.source}: model {name!r} has neither a champion nor a challenger; "
                "register one (`productgan register`) or pass --model models:/NAME/VERSION"
            )
        return [(key, v, version_details(client.get_model_version(name, v))) for key, v in keys]

    def _load_version(self, version: str) -> ProductGenerator:
        from productgan.registry.scoring import version_generator_dir

        with tempfile.TemporaryDirectory(prefix="productgan-studio-") as tmp:
            folder = version_generator_dir(self.model_name, version, tmp)
            product = load(folder, params=self.params)  # weights are in memory once loaded
        product.source = f"models:/{self.model_name}/{version}"
        return product
