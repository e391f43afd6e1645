"""Champion/challenger promotion: the rule, the alias moves, and their records.

Rules (the `register` section of params.yaml):
- A new version gets alias ``challenger``. The current ``champion`` (if any) and the challenger are scored in
  this step on the same evaluation set by the same scorer; no stored numbers from other data are compared.
- ``champion`` moves to the challenger only if the challenger's primary metric is better than the champion's
  by more than ``margin`` x |champion's value| and its class accuracy is not under the floor.
- A version whose training run FAILED, did not finish, or diverged (non-finite primary metric, or a
  ``diverged`` tag) is never promoted, by the rule or by hand.
- ``promote --version N`` and ``--rollback`` move ``champion`` by hand.
Every move appends to the registered model's ``champion_history`` tag (the stack ``--rollback`` pops) and
tags the versions involved with who, when, why; every decision is tagged on its version (``promotion.*``).
All alias moves happen under ``PromotionLock``: concurrent registrations are decided one at a time, each
against the champion that is current at that moment.
"""

from __future__ import annotations

import json
import math
import numbers
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from productgan.registry.config import RegisterConfig
from productgan.registry.lock import PromotionLock, lock_model_name, whoami
from productgan.registry.scoring import Scorer, is_finite, version_generator_dir

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
MAX_HISTORY = 200
TRUTHY = {"1", "true", "yes"}
# How often a decision is re-tried when the champion changed while we scored it, before scoring under the lock.
OPTIMISTIC_TRIES = 3


class PromotionError(RuntimeError):
    """A promotion that must not happen (failed training, unknown version, nothing to roll back to)."""


@dataclass(frozen=True)
class Decision:
    decision: str  # "promoted" | "kept" | "refused"
    reason: str

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"


def decide(challenger: dict[str, float], champion: dict[str, float] | None, cfg: RegisterConfig) -> Decision:
    """The promotion rule on two score dicts (``champion`` None: there is no champion yet)."""
    metric, acc_name, floor = cfg.primary_metric, cfg.class_accuracy_metric, cfg.class_accuracy_floor
    value = challenger.get(metric)
    if not is_finite(value):
        return Decision("refused", f"the challenger's {metric} is {value!r}, not a finite number (diverged?)")
    acc = challenger.get(acc_name)
    if not is_finite(acc):
        return Decision("kept", f"the challenger has no {acc_name} to check against the floor {floor}")
    if acc < floor:
        return Decision("kept", f"{acc_name} {acc:.4f} is under the floor {floor}")
    if champion is None:
        return Decision("promoted", f"no champion yet; {metric} {value:.6g}, {acc_name} {acc:.4f} >= floor {floor}")
    best = champion.get(metric)
    if not is_finite(best):
        return Decision("promoted", f"the champion's {metric} is {best!r}, not a finite number; challenger {value:.6g}")
    gain = value - best if cfg.greater_is_better else best - value
    need = cfg.margin * abs(best)
    direction = "higher" if cfg.greater_is_better else "lower"
    verdict = f"{metric} {value:.6g} vs champion {best:.6g} ({direction} is better)"
    margin = f"margin {need:.6g} ({cfg.margin:g} x |champion|)"
    if gain > need:
        return Decision("promoted", f"{verdict}: better by {gain:.6g} > {margin}")
    return Decision("kept", f"{verdict}: not better by more than the {margin}")


# --- reading the registry -------------------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot(client: Any, name: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The model's aliases and champion history, read in one request."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        import mlflow

        from productgan.redact import redact

        raise PromotionError(
            f"model {name!r} is not registered in {redact(mlflow.get_registry_uri())}; run `productgan register` "
            "first (or set MLFLOW_TRACKING_URI to the store that holds it)"
        ) from exc
    raw = model.tags.get(HISTORY_TAG)
    return {k: str(v) for k, v in (model.aliases or {}).items()}, (json.loads(raw) if raw else [])


def aliases(client: Any, name: str) -> dict[str, str]:
    return snapshot(client, name)[0]


def history(client: Any, name: str) -> list[dict[str, str]]:
    return snapshot(client, name)[1]


def _write_history(client: Any, name: str, entries: list[dict[str, str]]) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(entries[-MAX_HISTORY:], separators=(",", ":")))


def training_problem(client: Any, name: str, version: str) -> str | None:
    """Why ``version`` must never be champion (its training failed/diverged), or None when it may be."""
    from mlflow.exceptions import MlflowException

    tags = client.get_model_version(name, version).tags
    status = tags.get("training_status")
    if status != "FINISHED":
        return f"version {version}: training status is {status!r}, not FINISHED"
    if str(tags.get("diverged", "")).lower() in TRUTHY:
        return f"version {version}: training diverged"
    run_id = tags.get("training_run_id")
    if not run_id:
        return f"version {version} has no training_run_id tag; register it with `productgan register`"
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        return f"version {version}: its training run {run_id} cannot be read ({exc.error_code})"
    if run.info.status != "FINISHED":
        return f"version {version}: its training run {run_id} is {run.info.status}"
    if str(run.data.tags.get("diverged", "")).lower() in TRUTHY:
        return f"version {version}: its training run {run_id} is tagged diverged"
    return None


def _check_version(client: Any, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    if name.endswith(lock_model_name("")):
        raise PromotionError(f"{name!r} is a promotion lock, not a model")
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise PromotionError(f"promote: {name!r} has no version {version} ({exc.error_code})") from exc


# --- moving the champion --------------------------------------------------------------------------------------


def reconciled_history(entries: list[dict[str, str]], champion: str | None) -> list[dict[str, str]]:
    """The history made to end at the current ``champion`` alias (the alias is the truth).

    A holder that lost the lock half-way through a move (the alias set, the history not yet written) leaves
    the two apart; the next holder repairs that before it moves the champion again: a champion missing from
    the history is appended as ``recovered``; entries after the champion's last one (a move whose alias never
    changed) are dropped.
    """
    if champion is None or (entries and entries[-1]["version"] == champion):
        return list(entries)
    positions = [i for i, e in enumerate(entries) if e["version"] == champion]
    if positions:
        return list(entries[: positions[-1] + 1])
    return [*entries, {"version": champion, "action": "recovered", "at": now_iso(),
                       "by": "the next promotion (this move's own record was never written)"}]


def _move_champion(
    client: Any, lock: PromotionLock, name: str, version: str, action: str, reason: str, by: str
) -> str | None:
    """Point ``champion`` at ``version`` and record it; returns the previous champion. Caller holds ``lock``,
    and every write first checks that it still does (a stalled holder must not write over the next one)."""
    before, entries = snapshot(client, name)
    previous = before.get(CHAMPION)
    entries = reconciled_history(entries, previous)
    lock.check()
    client.set_registered_model_alias(name, CHAMPION, version)
    at = now_iso()
    if action == "rollback":
        while entries and entries[-1]["version"] != version:
            entries.pop()
    else:
        entries.append({"version": version, "action": action, "at": at, "by": by})
    lock.check()
    _write_history(client, name, entries)
    if before.get(CHALLENGER) == version:  # the challenger has become champion: nothing is waiting any more
        lock.check()
        client.delete_registered_model_alias(name, CHALLENGER)
    event = {"action": action, "at": at, "by": by, "reason": reason, "previous": previous or "none"}
    lock.check()
    client.set_model_version_tag(name, version, "champion.event", json.dumps(event, sort_keys=True))
    if previous and previous != version:
        lock.check()
        client.set_model_version_tag(
            name, previous, "champion.replaced", json.dumps({"by_version": version, "action": action, "at": at,
                                                             "by": by, "reason": reason})
        )
    return previous


def _lock(client: Any, cfg: RegisterConfig) -> PromotionLock:
    return PromotionLock(client, cfg.model_name, lease_s=cfg.lock_lease_s, timeout_s=cfg.lock_timeout_s)


def promote_version(client: Any, cfg: RegisterConfig, version: int | str, reason: str | None = None) -> dict[str, Any]:
    """``productgan promote --version N``: make N champion by hand (refused if its training failed)."""
    name, version = cfg.model_name, str(version)
    _check_version(client, name, version)
    by = whoami()
    with _lock(client, cfg) as lock:
        problem = training_problem(client, name, version)
        if problem:
            raise PromotionError(f"promote: refused, {problem}; a failed or diverged training run is never champion")
        current = aliases(client, name).get(CHAMPION)
        if current == version:
            return {"model_name": name, "champion_version": version, "previous": version, "changed": False,
                    "action": "manual", "reason": "already champion"}
        previous = _move_champion(client, lock, name, version, "manual", reason or "promoted by hand", by)
    return {"model_name": name, "champion_version": version, "previous": previous, "changed": True,
            "action": "manual", "reason": reason or "promoted by hand", "by": by}


def rollback(client: Any, cfg: RegisterConfig, reason: str | None = None) -> dict[str, Any]:
    """``productgan promote --rollback``: champion back to the one before it in ``champion_history``."""
    name = cfg.model_name
    by = whoami()
    with _lock(client, cfg) as lock:
        current_aliases, entries = snapshot(client, name)
        current = current_aliases.get(CHAMPION)
        if current is None:
            raise PromotionError(f"promote --rollback: {name!r} has no champion to roll back")
        entries = reconciled_history(entries, current)
        while entries and entries[-1]["version"] == current:
            entries.pop()
        if not entries:
            raise PromotionError(
                f"promote --rollback: no earlier champion of {name!r} is recorded in its {HISTORY_TAG} tag; "
                "use `productgan promote --version N`"
            )
        target = entries[-1]["version"]
        problem = training_problem(client, name, target)
        if problem:
            raise PromotionError(f"promote --rollback: refused, {problem}; use `productgan promote --version N`")
        _move_champion(client, lock, name, target, "rollback", reason or f"rolled back from version {current}", by)
        lock.check()
        client.set_model_version_tag(
            name, current, "champion.rolled_back", json.dumps({"to_version": target, "at": now_iso(), "by": by,
                                                               "reason": reason or "rollback"})
        )
    return {"model_name": name, "champion_version": target, "previous": current, "changed": True,
            "action": "rollback", "reason": reason or f"rolled back from version {current}", "by": by}


# --- the automatic decision for a newly registered version ----------------------------------------------------


def _data_hash(data_dir: Path) -> str:
    manifest = data_dir / "manifest.json"
    if manifest.is_file():
        return str(json.loads(manifest.read_text(encoding="utf-8")).get("dataset_hash") or data_dir)
    return str(data_dir)


def _clean(scores: dict[str, float] | None) -> dict[str, float | None] | None:
    # JSON has no NaN: a non-finite score is written as null
    if scores is None:
        return None
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in sorted(scores.items())}


def recorded_decision(client: Any, name: str, version: str) -> dict[str, Any] | None:
    """The decision already recorded on ``version`` (a re-run of register on the same generator), or None."""
    tags = client.get_model_version(name, version).tags
    if "promotion.decision" not in tags:
        return None
    return {
        "model_name": name,
        "version": version,
        "champion_version": aliases(client, name).get(CHAMPION),
        "decision": tags["promotion.decision"],
        "reason": tags.get("promotion.reason", ""),
        "scores": json.loads(tags.get("promotion.scores", "{}")),
        "previous_champion": tags.get("promotion.champion_version"),
    }


def promote_new_version(
    client: Any,
    cfg: RegisterConfig,
    version: int | str,
    *,
    challenger_dir: Path,
    data_dir: Path | None,
    scorer: Scorer | None,
    recorded_scores: dict[str, float],
) -> dict[str, Any]:
    """Make ``version`` the challenger and decide whether it replaces the champion; returns the record.

    With ``data_dir``, champion and challenger are both scored by ``scorer`` on it. Without it, only a first
    version (no champion) can be decided, on ``recorded_scores`` (the evaluation step's metrics file).
    Scoring runs outside the lock; if the champion changed meanwhile, the decision is re-tried against the new
    one (after OPTIMISTIC_TRIES, scoring happens under the lock so the decision always completes).
    """
    name, version = cfg.model_name, str(version)
    done = recorded_decision(client, name, version)
    if done is not None:
        return done
    by = whoami()
    problem = training_problem(client, name, version)
    if problem:
        current = aliases(client, name).get(CHAMPION)
        return _record(client, name, version, Decision("refused", problem), None, None, "none", by, "none", current)
    with _lock(client, cfg) as lock:
        lock.check()
        client.set_registered_model_alias(name, CHALLENGER, version)

    if data_dir is not None and scorer is None:
        from productgan.registry.scoring import default_scorer

        scorer = default_scorer
    with tempfile.TemporaryDirectory(prefix="productgan-promote-") as downloads:
        return _decide_under_lock(client, cfg, version, by, challenger_dir, data_dir, scorer, recorded_scores,
                                  Path(downloads))


def _decide_under_lock(
    client: Any,
    cfg: RegisterConfig,
    version: str,
    by: str,
    challenger_dir: Path,
    data_dir: Path | None,
    scorer: Scorer | None,
    recorded_scores: dict[str, float],
    downloads: Path,
) -> dict[str, Any]:
    name = cfg.model_name
    cache: dict[str, dict[str, float]] = {}

    def scores(v: str) -> dict[str, float]:
        if v not in cache:
            if data_dir is None:
                cache[v] = dict(recorded_scores)
            else:
                folder = challenger_dir if v == version else version_generator_dir(name, v, downloads / v)
                cache[v] = {k: float(x) for k, x in scorer(Path(folder), data_dir).items()
                            if isinstance(x, numbers.Real) and not isinstance(x, bool)}
        return cache[v]

    scored_on = _data_hash(data_dir) if data_dir is not None else "metrics-file"
    for attempt in range(OPTIMISTIC_TRIES + 1):
        optimistic = attempt < OPTIMISTIC_TRIES
        if optimistic:
            seen = aliases(client, name).get(CHAMPION)
            scores(version)
            if seen is not None and data_dir is not None:
                scores(seen)
        with _lock(client, cfg) as lock:
            champion = aliases(client, name).get(CHAMPION)
            if optimistic and champion != seen:
                continue  # the champion moved while we scored: score the new one and decide again
            if champion is not None and data_dir is None:
                decision = Decision(
                    "kept", "no --data given to re-score the champion and the challenger on the same evaluation "
                    "set; pass --data, or promote by hand with `productgan promote --version N`")
                champion_scores = None
            else:
                champion_scores = scores(champion) if champion is not None else None
                decision = decide(scores(version), champion_scores, cfg)
            if decision.promoted:
                _move_champion(client, lock, name, version, "auto", decision.reason, by)
            final = version if decision.promoted else champion
            return _record(client, name, version, decision, scores(version), champion_scores,
                           champion or "none", by, scored_on, final, lock)
    raise AssertionError("unreachable: the last try scores under the lock")


def _record(
    client: Any,
    name: str,
    version: str,
    decision: Decision,
    challenger: dict[str, float] | None,
    champion: dict[str, float] | None,
    champion_version: str,
    by: str,
    scored_on: str,
    champion_after: str | None,
    lock: PromotionLock | None = None,
) -> dict[str, Any]:
    score_doc = {"challenger": _clean(challenger), "champion": _clean(champion)}
    tags = {  # promotion.decision last: its presence means the whole record was written (recorded_decision)
        "promotion.reason": decision.reason,
        "promotion.champion_version": champion_version,
        "promotion.scores": json.dumps(score_doc, sort_keys=True),
        "promotion.record": json.dumps({"scored_on": scored_on, "at": now_iso(), "by": by}, sort_keys=True),
        "promotion.decision": decision.decision,
    }
    for key, value in tags.items():
        if lock is not None:  # a decision made under the lock is written only while we still hold it
            lock.check()
        client.set_model_version_tag(name, version, key, value)
    return {
        "model_name": name,
        "version": version,
        "champion_version": champion_after,
        "decision": decision.decision,
        "reason": decision.reason,
        "scores": score_doc,
        "previous_champion": None if champion_version == "none" else champion_version,
    }


def status(client: Any, cfg: RegisterConfig) -> dict[str, Any]:
    """Champion, challenger and the recorded history of ``cfg.model_name`` (read-only)."""
    current_aliases, entries = snapshot(client, cfg.model_name)
    return {"model_name": cfg.model_name, "aliases": current_aliases, "history": entries}
