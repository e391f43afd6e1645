"""What ingest may take from a source: path checks (nothing lands outside --out) and junk rules.

Every source (folder, archive, S3) lists relative paths; these helpers decide, per path, whether it is
refused (unsafe: never followed or written), skipped (junk that is no product photo) or accepted.
"""

from __future__ import annotations

import re

# Operating-system droppings that are never product photos (compared case-insensitively).
_JUNK_FILES = {
    ".ds_store": "macOS Finder metadata",
    "thumbs.db": "Windows thumbnail cache",
    "ehthumbs.db": "Windows thumbnail cache",
    "desktop.ini": "Windows folder settings",
    "icon\r": "macOS folder icon",
}
_JUNK_DIRS = {
    "__macosx": "macOS archive metadata folder",
    "@eadir": "Synology thumbnail folder",
    "$recycle.bin": "Windows recycle bin",
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def normalize_member_path(name: str) -> tuple[str | None, str | None]:
    """``(posix relative path, None)`` for a safe name, ``(None, reason)`` for one that must be refused.

    Archive members and S3 keys are names someone else wrote: absolute paths, drive letters, ``..``
    components, backslashes (a separator elsewhere) and NUL bytes could all steer a write outside --out.
    Empty and ``.`` components (``./a//b``) are harmless and dropped.
    """
    if "\x00" in name:
        return None, "NUL byte in the name"
    if "\\" in name:
        return None, "backslash in the name (a path separator on Windows; could escape the output folder)"
    if name.startswith("/"):
        return None, "absolute path (would be written outside the output folder)"
    if re.match(r"^[A-Za-z]:", name):
        return None, "drive-letter path (would be written outside the output folder)"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "'..' in the path (would be written outside the output folder)"
    if not parts:
        return None, "empty path"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None, "name is not valid UTF-8"
    return "/".join(parts), None


def junk_reason(relpath: str) -> str | None:
    """Why ``relpath`` (posix, relative to the source root) is junk to skip, or None for a real file."""
    parts = relpath.split("/")
    for i, part in enumerate(parts):
        is_dir = i < len(parts) - 1
        low = part.lower()
        if is_dir and low in _JUNK_DIRS:
            return _JUNK_DIRS[low]
        if not is_dir and low in _JUNK_FILES:
            return _JUNK_FILES[low]
        if part.startswith("._"):
            return "AppleDouble resource fork (macOS '._' file)"
        if part.startswith("."):
            return "hidden folder" if is_dir else "hidden file"
    return None


def junk_dir_reason(dirname: str) -> str | None:
    """Why a whole folder (its name only) is skipped without walking it, or None."""
    low = dirname.lower()
    if low in _JUNK_DIRS:
        return _JUNK_DIRS[low]
    if dirname.startswith("."):
        return "hidden folder"
    return None


def check_source_name(name: str) -> str | None:
    """Why ``name`` cannot name a source folder data/<name>/, or None when it can."""
    if not _NAME_RE.match(name):
        return (
            f"source name {name!r} must be 1-100 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit; pass --name NAME"
        )
    if name.lower() == "manifest.json":
        return "source name 'manifest.json' would clash with data/manifest.json; pass --name NAME"
    return None


def sanitize_source_name(raw: str) -> str:
    """A valid source name derived from a folder, archive or prefix name (``My Photos`` -> ``My-Photos``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:100]
    return name or "photos"
