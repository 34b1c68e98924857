"""Turning a teacher's raw reply into a clean response: a pure function, tested on saved replies.

An unusable reply never raises: it becomes ``valid=False`` with a reason
(``empty``, ``too_long``, ``refusal``, ``echoes_prompt``, ``no_dimension``) and the raw text kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:improved|rewritten|revised|new|final|updated|more empathetic)?\s*"
    r"(?:response|reply|version|answer)(?:\s*\(round \w+\))?\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_ECHOED_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:the|a)\s+listener(?:'s)?\s+(?:replied|replies|reply|response|would reply|says|said)"
    r"\s*(?:\*\*)?\s*:\s*",
    re.IGNORECASE,
)
"""The prompt's own framing ("A listener replied: ...") written back before the rewrite (seen from SmolLM2-135M)."""
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


ECHO_WORDS = 6
"""A reply holding this many consecutive words of the instructions it was given is an echo, not a rewrite."""


def _words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def instruction_ngrams(template: str, n: int = ECHO_WORDS) -> set[tuple[str, ...]]:
    """The n-word runs of a prompt template's own text (never across a ``${field}``: the fields are the dialogue's
    and the reply's words, which a rewrite may well repeat)."""
    grams: set[tuple[str, ...]] = set()
    for piece in re.split(r"\$\{\w+\}", template):
        words = _words_of(piece)
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return grams


def echoes(text: str, grams: set[tuple[str, ...]], n: int = ECHO_WORDS) -> bool:
    words = _words_of(text)
    return any(tuple(words[i : i + n]) in grams for i in range(len(words) - n + 1))


def parse_reply(
    raw: str | None,
    max_words: int = 97,
    expect_dimension: bool = False,
    instructions: set[tuple[str, ...]] | None = None,
) -> ParsedReply:
    """Cleans a raw teacher reply.

    Removes code fences, a "Sure, here is..." preamble, labels such as
    ``Improved response:``, surrounding quotes and extra whitespace. With
    ``expect_dimension`` the ``Weakest: <dimension>`` line of the identify-lacking
    strategy is read and removed.

    Args:
        raw: the reply as received (``None`` for no content).
        max_words: replies longer than this are invalid (``too_long``).
        expect_dimension: parse the identify-lacking answer format.
        instructions: the n-word runs of the prompt's own text (:func:`instruction_ngrams`); a reply that repeats one
            is invalid (``echoes_prompt``): a small model sometimes writes the instructions back instead of a reply.

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
    text = _ECHOED_LABEL.sub("", text, count=1).strip()
    text = _LABEL.sub("", text, count=1).strip()
    text = _strip_quotes(text)
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return ParsedReply("", False, raw, "empty", dimension)
    if _REFUSAL.match(text):
        return ParsedReply(text, False, raw, "refusal", dimension)
    if len(text.split()) > max_words:
        return ParsedReply(text, False, raw, "too_long", dimension)
    if instructions and echoes(text, instructions):
        return ParsedReply(text, False, raw, "echoes_prompt", dimension)
    if expect_dimension and dimension not in ("cognitive", "affective", "compassionate"):
        return ParsedReply(text, False, raw, "no_dimension", dimension)
    return ParsedReply(text, True, raw, None, dimension)
