"""Cron expressions for KFP recurring runs.

KFP's scheduler (robfig/cron) wants six fields, seconds first (``0 0 3 * * 1``). People write five
(``0 3 * * 1``, crontab and Kubernetes CronJob style): accept both, hand KFP six, and reject anything else
with the field and the allowed range named — a typo here would otherwise surface days later as a missing run.
"""

from __future__ import annotations

import re

FIELDS = (
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_EVERY = re.compile(r"^@every (\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_TERM = re.compile(r"^(?P<range>\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/(?P<step>\d+))?$")


class CronError(ValueError):
    pass


def _value(token: str, name: str, low: int, high: int, names: tuple[str, ...] | None, expr: str) -> int:
    upper = token.upper()
    if names and upper in names:
        return names.index(upper) + (1 if name == "month" else 0)
    if not token.isdigit():
        raise CronError(f"cron {expr!r}: {name} field has {token!r}; use a number {low}-{high}" + (
            f" or {names[0]}-{names[-1]}" if names else ""))
    number = int(token)
    if name == "day of week" and number == 7:  # both 0 and 7 mean Sunday in crontab
        number = 0
    if not low <= number <= high:
        raise CronError(f"cron {expr!r}: {name} {number} is outside {low}-{high}")
    return number


def _check_field(field: str, name: str, low: int, high: int, names: tuple[str, ...] | None, expr: str) -> None:
    for term in field.split(","):
        match = _TERM.match(term)
        if not match:
            raise CronError(f"cron {expr!r}: cannot read {name} field {field!r} (use *, N, N-M, */S, N-M/S, lists)")
        rng, step = match.group("range"), match.group("step")
        if rng == "?" and name not in ("day of month", "day of week"):
            raise CronError(f"cron {expr!r}: '?' is only allowed for day of month or day of week")
        if step is not None and int(step) == 0:
            raise CronError(f"cron {expr!r}: step /0 in {name} field")
        if rng in ("*", "?"):
            continue
        start, _, end = rng.partition("-")
        first = _value(start, name, low, high, names, expr)
        if end and _value(end, name, low, high, names, expr) < first:
            raise CronError(f"cron {expr!r}: {name} range {rng} runs backwards")


def to_kfp_cron(expr: str) -> str:
    """A validated cron for KFP: five fields get ``0`` seconds prepended; six are kept; descriptors pass."""
    text = " ".join((expr or "").split())
    if text in DESCRIPTORS or _EVERY.match(text):
        return text
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronError(
            f"cron {expr!r}: expected 5 fields (minute hour day-of-month month day-of-week, e.g. '0 3 * * 1' = "
            "Mondays 03:00) or 6 with seconds first (KFP's form, e.g. '0 0 3 * * 1'), or @daily/@weekly/@every 6h"
        )
    for field, (name, low, high, names) in zip(fields, FIELDS, strict=True):
        _check_field(field, name, low, high, names, expr)
    return " ".join(fields)
