"""Parsing a judge's reply into ``A``, ``B``, ``tie`` or ``None`` (invalid): a pure function."""

from __future__ import annotations

import re

_VERDICT = re.compile(r"verdict\s*[:=\-]?\s*\**\s*(?:response\s+)?(a|b|tie|draw|equal)\b", re.IGNORECASE)
_BARE = re.compile(r"^\W*(?:response\s+)?(a|b|tie)\W*$", re.IGNORECASE)


def parse_verdict(raw: str | None) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"``; ``None`` when the reply names no single verdict.

    The last ``Verdict: X`` line wins (judges sometimes reason first); a reply that is
    only ``A``, ``B`` or ``tie`` is accepted too.
    """
    if not raw:
        return None
    found = _VERDICT.findall(raw)
    if found:
        value = found[-1].lower()
    else:
        bare = _BARE.match(raw.strip())
        if not bare:
            return None
        value = bare.group(1).lower()
    return {"a": "A", "b": "B"}.get(value, "tie")
