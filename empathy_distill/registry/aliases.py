"""The registry's aliases (``champion`` is served, ``challenger`` is the latest registered) and how a version is
named in messages."""

from __future__ import annotations

CHAMPION, CHALLENGER = "champion", "challenger"


def version_label(version: str | None, missing: str = "none") -> str:
    """``v3``, or ``missing`` when there is no version."""
    return f"v{version}" if version else missing


def holder_label(version: str | None) -> str:
    """An alias holder in messages about moves: ``v3``, or ``(none)`` when the alias was unset."""
    return version_label(version, "(none)")
