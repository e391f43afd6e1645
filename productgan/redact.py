"""The one place that makes a URI, an endpoint or a message safe to print, log or store.

A tracking URI or an S3 endpoint may carry credentials (``postgresql://user:password@db/mlflow``,
``https://user:token@mlflow``, a presigned ``...?X-Amz-Signature=...``), and what productgan writes is cached,
pushed and shipped (DVC outputs, KFP artifacts, registered models, logs). ``redact`` removes:

- the user-info of every ``scheme://user:password@host`` in the text (``scheme://***@host``), also when the
  password holds an unencoded ``/``, ``#``, ``?`` or ``@``;
- the value of every ``name=value`` whose name says secret (``password``, ``token``, ``signature``,
  ``X-Amz-Credential``, ...) -- query strings and libpq DSNs (``host=db password=...``) alike -- and of login
  cookies (``authservice_session=...``, ``oauth2_proxy_kubeflow=...``, any ``*session`` or ``*cookie``);
- ``Authorization:`` and ``Cookie:`` header values and ``Bearer`` tokens;
- the value of any environment variable whose name says secret (``MLFLOW_TRACKING_PASSWORD``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``KFP_COOKIE``, ...), wherever it appears, when it is long
  enough (``MIN_SECRET_LENGTH``) that replacing it cannot mangle ordinary words.

Everything else is kept, so the result still says which server or file was meant.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any, TextIO

MASK = "***"
# Shorter environment values are not searched for: "true", "us-east-1" or "testing" also occur in plain text.
MIN_SECRET_LENGTH = 8

# name=value pairs whose value is a secret (matched case-insensitively, as a whole name or a name's end)
_SECRET_NAMES = (
    r"password|passwd|pwd|sslpassword|secret|client_secret|secret_access_key|secret_key|access_token|id_token"
    r"|refresh_token|session_token|security_token|token|api_key|apikey|auth|signature|sig|credential"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential"
    r"|session|cookie|oauth2_proxy[\w-]*"  # login cookies: authservice_session, oauth2_proxy_kubeflow, ...
)
_SECRET_PAIR = re.compile(
    rf"(?i)(?P<name>\b[\w.-]*?(?:{_SECRET_NAMES}))(?P<sep>\s*=\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s&;,'\")\]}}]+)"
)
# scheme://authority -- the authority ends at the first / ? # or whitespace; its user-info at the last @
_AUTHORITY = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^\s/?#'\"<>]*)")
# user:password@ where the password holds characters a URI must encode (/ # ? @): up to the last @ before a host
# on the same word; a user:digits/ start is a host and port, not a password
_LOOSE_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#@'\"<>:]*:(?!\d+(?:[/?#\s]|$))[^\s'\"<>]*)"
    r"@(?=[A-Za-z0-9\[])"
)
_AUTH_HEADER = re.compile(r"(?i)(?P<head>\bauthorization\s*[:=]\s*(?:basic\s+|bearer\s+|token\s+)?)\S+")
_COOKIE_HEADER = re.compile(r"(?i)(?P<head>\b(?:set-)?cookie\s*:\s*)[^\r\n]+")
_BEARER = re.compile(r"(?i)(?P<head>\bbearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_ENV = re.compile(r"(?i)(password|passwd|secret|token|credential|api_?key|cookie)")
_NOT_A_SECRET_ENV = re.compile(r"(?i)_(file|path|dir|uri|url|endpoint)$")  # where a secret lies, not the secret


def _userinfo(match: re.Match[str]) -> str:
    authority = match["authority"]
    if "@" not in authority:
        return match.group(0)
    return f"{match['scheme']}{MASK}@{authority.rsplit('@', 1)[1]}"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment variables whose names say secret, longest first."""
    env = os.environ if environ is None else environ
    found = {
        v for k, v in env.items()
        if _SECRET_ENV.search(k) and not _NOT_A_SECRET_ENV.search(k) and len(v) >= MIN_SECRET_LENGTH
    }
    return sorted(found, key=len, reverse=True)


def redact(text: object, environ: Mapping[str, str] | None = None) -> str:
    """``text`` (a URI, an endpoint, a message, anything ``str()`` can show) without credentials."""
    out = str(text)
    for value in secret_values(environ):
        out = out.replace(value, MASK)
    out = _LOOSE_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", out)
    out = _AUTHORITY.sub(_userinfo, out)
    out = _COOKIE_HEADER.sub(lambda m: f"{m['head']}{MASK}", out)
    out = _SECRET_PAIR.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", out)
    out = _AUTH_HEADER.sub(lambda m: f"{m['head']}{MASK}", out)
    return _BEARER.sub(lambda m: f"{m['head']}{MASK}", out)


def redact_log_records() -> None:
    """Every log record of this process (ours, MLflow's, botocore's) is redacted when it is created."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "productgan_redacts", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return record
        record.msg, record.args = redact(message), ()
        return record

    factory.productgan_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class RedactingStream:
    """A text stream (sys.stdout, sys.stderr) that redacts what is written to it, for the lines libraries print
    themselves (MLflow prints run links with the tracking URI as given)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # a text stream refuses bytes (click probes for that with write(b""))
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, buffer ...
        return getattr(self._stream, name)


def redact_process_output() -> None:
    """From now on, this process's log records, prints and tracebacks are redacted (the CLI calls it first)."""
    import sys

    redact_log_records()
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)  # type: ignore[assignment]
