"""Degenerate replies: empty, run on past the turn, or one phrase repeated. None of them is ever a win.

A judge, LLM or scorer, can prefer a reply that rambles on to ``max_new_tokens`` or repeats itself
(longer often looks warmer). Such a reply is a defect of the student, not empathy, so the
evaluation finds them before any verdict counts: a comparison where only the candidate's reply is
degenerate is a loss, where both are it is a tie, and a candidate with more degenerate replies than
``evaluation.max_degenerate_fraction`` makes the report not valid (the gate refuses it).

Truncation never wins either side's way: where only the *opponent* ran to ``max_new_tokens``
without ending its turn, the comparison is a tie, not the judge's verdict. A judge reads a cut
reply as a worse one; a base that was cut off says nothing about whether the tuned student is
more empathetic, and a student must not clear the gate because its base was given too few tokens.
(An opponent's empty or repetitive reply keeps the verdict: the judge saw the whole of it.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

REASONS = ("empty", "no_end_of_turn", "repetitive")
NGRAM = 3
MIN_REPEATS = 3
MAX_REPEATED_SHARE = 0.5
EXAMPLES = 3


def repeated_share(text: str, n: int = NGRAM) -> tuple[float, int]:
    """The share of the words covered by the most frequent word n-gram, and how often it occurs."""
    words = text.lower().split()
    if len(words) < n:
        return 0.0, 0
    top = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1)).most_common(1)[0][1]
    return min(1.0, top * n / len(words)), top


def degenerate_reason(text: Any, finished: Any = True) -> str | None:
    """``empty``, ``no_end_of_turn`` (ran to max_new_tokens), ``repetitive`` (an n-gram covering half the reply,
    three times or more), or None for a usable reply."""
    text = "" if text is None or text != text else str(text)  # NaN from a missing value
    if not text.strip():
        return "empty"
    if str(finished).strip().lower() in ("false", "0", "length"):
        return "no_end_of_turn"
    share, repeats = repeated_share(text)
    if repeats >= MIN_REPEATS and share >= MAX_REPEATED_SHARE:
        return "repetitive"
    return None


def reasons_for(texts: Sequence[Any], finished: Sequence[Any] | None = None) -> list[str | None]:
    finished = finished if finished is not None else [True] * len(texts)
    return [degenerate_reason(t, f) for t, f in zip(texts, finished)]


class DegenerateCounts(BaseModel):
    """One side's degenerate replies in a comparison: counts per reason (one field per :data:`REASONS`), the total,
    of ``n``, a few examples."""

    model_config = ConfigDict(extra="forbid")

    empty: int = 0
    no_end_of_turn: int = 0
    repetitive: int = 0
    total: int = 0
    n: int = 0
    examples: dict[str, list[str]] = Field(default_factory=dict)

    def count(self, reason: str) -> int:
        """The count for one of :data:`~empathy_distill.judging.degenerate.REASONS`."""
        return int(getattr(self, reason))

    def kinds(self) -> str:
        """``2 empty, 1 no end of turn``: the reasons that occurred, in the reasons' order."""
        return ", ".join(f"{self.count(r)} {r.replace('_', ' ')}" for r in REASONS if self.count(r))

    @property
    def share(self) -> float:
        return self.total / self.n if self.n else 0.0


def summarize(texts: Sequence[Any], reasons: Sequence[str | None]) -> DegenerateCounts:
    """Counts per reason, the total, and a few examples of each (the text as it was generated)."""
    counts = Counter(r for r in reasons if r)
    examples = {reason: [str(t)[:200] for t, r in zip(texts, reasons) if r == reason][:EXAMPLES] for reason in counts}
    return DegenerateCounts(
        **{reason: int(counts.get(reason, 0)) for reason in REASONS},
        total=int(sum(counts.values())),
        n=len(reasons),
        examples=examples,
    )


def apply_to_outcomes(
    outcomes: Sequence[float | None], candidate: Sequence[str | None], opponent: Sequence[str | None]
) -> tuple[list[float | None], int]:
    """Outcomes with degenerate replies ruled: only the candidate's degenerate is a loss, both is a tie, and only
    the opponent's cut off (``no_end_of_turn``) is a tie.

    Returns the outcomes and how many the rule changed.
    """
    ruled, changed = [], 0
    for outcome, cand, opp in zip(outcomes, candidate, opponent):
        new = outcome
        if cand and opp:
            new = 0.5
        elif cand:
            new = 0.0
        elif opp == "no_end_of_turn":
            new = 0.5
        changed += new != outcome
        ruled.append(new)
    return ruled, changed


def opponent_truncated(candidate: Sequence[str | None], opponent: Sequence[str | None]) -> int:
    """Comparisons made a tie because only the opponent's reply was cut off."""
    return sum(1 for cand, opp in zip(candidate, opponent) if not cand and opp == "no_end_of_turn")
