"""The one place that makes URIs (and messages holding them) safe to show: no credentials.

Tracking URIs can carry secrets in two places: the user-info part (``http://user:pw@host``,
``postgresql://user:pw@db/mlflow``) and query parameters (``?password=...``, ``?token=...``).
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"//[^/@\s]*@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;][a-z0-9_.-]*(?:password|passwd|pwd|secret|token|key|credential)[a-z0-9_.-]*=)[^&;#\s]*"
)


def redact_uri(text: str) -> str:
    """``http://user:pw@host/x?token=abc`` -> ``http://***@host/x?token=***``; works on any text that holds
    URIs (an error message), and leaves text without credentials unchanged."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub("//***@", str(text)))
