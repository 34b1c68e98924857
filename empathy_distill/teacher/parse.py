"""Turning a teacher's raw reply into a clean response: a pure function, tested on saved replies.

An unusable reply never raises: it becomes ``valid=False`` with a reason
(``empty``, ``too_long``, ``refusal``, ``no_dimension``) and the raw text kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:improved|rewritten|revised|new|final|updated|more empathetic)?\s*"
    r"(?:response|reply|version|answer)(?:\s*\(round \w+\))?\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(r"^\s*(?:sure|certainly|of course|here(?:'s| is)[^:\n]*)[^:\n]*:\s*\n", re.IGNORECASE)
_WEAKEST = re.compile(
    r"^\s*(?:\*\*)?weakest(?: dimension)?\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*(\w+)", re.IGNORECASE | re.MULTILINE
)
_FENCE = re.compile(r"^```\w*\s*\n?|\n?```\s*$")
_QUOTES = [('"', '"'), ("\u201c", "\u201d"), ("'", "'"), ("\u00ab", "\u00bb"), ("\u2018", "\u2019")]
_REFUSAL = re.compile(
    r"^\s*(?:i'm sorry,? but|i am sorry,? but|i can(?:no|')t (?:help|assist)|as an ai)", re.IGNORECASE
)


@dataclass(frozen=True)
class ParsedReply:
    """A cleaned reply; ``valid`` is False with a ``reason`` when it cannot be used."""

    text: str
    valid: bool
    raw: str
    reason: str | None = None
    dimension: str | None = None

    @property
    def words(self) -> int:
        return len(self.text.split())


def _strip_quotes(text: str) -> str:
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for left, right in _QUOTES:
            if (
                text.startswith(left)
                and text.endswith(right)
                and text.count(left) + (text.count(right) if right != left else 0) <= 2 + (left == right)
            ):
                text = text[len(left) : len(text) - len(right)].strip()
                changed = True
    return text


def parse_reply(raw: str | None, max_words: int = 97, expect_dimension: bool = False) -> ParsedReply:
    """Cleans a raw teacher reply.

    Removes code fences, a "Sure, here is..." preamble, labels such as
    ``Improved response:``, surrounding quotes and extra whitespace. With
    ``expect_dimension`` the ``Weakest: <dimension>`` line of the identify-lacking
    strategy is read and removed.

    Args:
        raw: the reply as received (``None`` for no content).
        max_words: replies longer than this are invalid (``too_long``).
        expect_dimension: parse the identify-lacking answer format.

    Returns:
        A :class:`ParsedReply`; never raises.
    """
    raw = raw or ""
    text = _FENCE.sub("", raw.strip()).strip()
    dimension = None
    if expect_dimension:
        match = _WEAKEST.search(text)
        if match:
            dimension = match.group(1).lower()
            text = (text[: match.start()] + text[match.end() :]).strip()
    text = _PREAMBLE.sub("", text, count=1).strip()
    text = _LABEL.sub("", text, count=1).strip()
    text = _strip_quotes(text)
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return ParsedReply("", False, raw, "empty", dimension)
    if _REFUSAL.match(text):
        return ParsedReply(text, False, raw, "refusal", dimension)
    if len(text.split()) > max_words:
        return ParsedReply(text, False, raw, "too_long", dimension)
    if expect_dimension and dimension not in ("cognitive", "affective", "compassionate"):
        return ParsedReply(text, False, raw, "no_dimension", dimension)
    return ParsedReply(text, True, raw, None, dimension)
