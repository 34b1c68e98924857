"""What a teacher run will cost, said before its first request: requests, tokens, dollars and the caps in force.

The first turn's requests are known exactly (they are built from the data); a later turn carries the
conversation so far, so its prompt is estimated as the first turn's plus one reply and one turn
template per earlier turn. Tokens are counted as one per 4 bytes of UTF-8 plus 8 per message (English
averages about 4 characters a token); a reply as ``target_words`` x 1.4 tokens, capped at
``max_tokens``. The worst case prices every reply at ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from empathy_distill.data.reports import BootstrapReport

TOKENS_PER_WORD = 1.4
TURN_TEMPLATE_TOKENS = 120  # a later turn's instruction (the templates under prompts/ run 60-160 tokens)


def prompt_tokens(messages: Sequence[tuple[str, str]]) -> int:
    """The estimate of one request's prompt tokens."""
    return sum(len(content.encode("utf-8")) // 4 + 8 for _, content in messages)


@dataclass(frozen=True)
class Plan:
    dialogues: int
    requests: int
    turns: int
    first_turn_cached: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    worst_cost_usd: float
    max_requests: int | None
    max_cost_usd: float | None
    priced: bool = True

    def line(self) -> str:
        """One line, printed before the first request."""
        cached = (
            f"; all {self.dialogues:,} first-turn replies cached (a rerun: expect 0 sent)"
            if self.dialogues and self.first_turn_cached == self.dialogues
            else f"; {self.first_turn_cached:,} of {self.dialogues:,} first-turn replies cached"
            if self.first_turn_cached
            else ""
        )
        caps = ", ".join(
            [f"{self.max_requests:,} requests" if self.max_requests is not None else "no request cap"]
            + [f"${self.max_cost_usd:,.2f}" if self.max_cost_usd is not None else "no cost cap"]
        )
        stop = (
            f" (the request cap stops it after {self.max_requests:,})"
            if self.max_requests is not None and self.requests > self.max_requests
            else f" (the cost cap may stop it near ${self.max_cost_usd:,.2f})"
            if self.max_cost_usd is not None and self.cost_usd > self.max_cost_usd
            else ""
        )
        # the dollars price every request; with replies cached a rerun sends fewer, so the figure says so
        uncached = " with nothing cached" if self.first_turn_cached else ""
        cost = (
            f"~${self.cost_usd:,.2f}{uncached} (${self.worst_cost_usd:,.2f} if every reply ran to max_tokens)"
            if self.priced
            else "no prices set (teacher.prices)"
        )
        return (
            f"teacher plan: {self.requests:,} requests for {self.dialogues:,} dialogues ({self.turns} each){cached}; "
            f"~{_tokens(self.prompt_tokens)} prompt + ~{_tokens(self.completion_tokens)} completion tokens, "
            f"{cost}; caps: {caps}{stop}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tokens(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n / 1e3:.1f}k" if n >= 1_000 else str(n)


def plan(first_turn: Sequence[Any], turns: int, target_words: int, teacher: Any) -> Plan:
    """The plan of a run whose first turn sends ``first_turn`` (:class:`~empathy_distill.teacher.types.ChatRequest`)
    and then ``turns - 1`` more turns per dialogue, priced with ``teacher``'s budget (batch discount included)."""
    budget = getattr(teacher, "budget", None)
    cache = getattr(teacher, "cache", None)
    max_tokens = first_turn[0].max_tokens if first_turn else 0
    reply = min(max_tokens, round(target_words * TOKENS_PER_WORD))
    first = [prompt_tokens(r.messages) for r in first_turn]
    n = len(first)

    # turn k (0-based) carries k earlier replies and k turn templates on top of the first turn's prompt
    def prompts_with(reply_tokens: int) -> int:
        return sum(first) * turns + sum(k * (reply_tokens + TURN_TEMPLATE_TOKENS) for k in range(turns)) * n

    prompts, worst_prompts = prompts_with(reply), prompts_with(max_tokens)
    completions = reply * n * turns
    worst_completions = max_tokens * n * turns
    in_1k = budget.in_per_1k if budget else 0.0
    out_1k = budget.out_per_1k if budget else 0.0
    return Plan(
        dialogues=n,
        requests=n * turns,
        turns=turns,
        first_turn_cached=sum(1 for r in first_turn if cache is not None and r.key in cache),
        prompt_tokens=prompts,
        completion_tokens=completions,
        cost_usd=round(prompts / 1000 * in_1k + completions / 1000 * out_1k, 4),
        worst_cost_usd=round(worst_prompts / 1000 * in_1k + worst_completions / 1000 * out_1k, 4),
        max_requests=budget.max_requests if budget else None,
        max_cost_usd=budget.max_cost_usd if budget else None,
        priced=bool(in_1k or out_1k),
    )


def spent(report: BootstrapReport) -> str:
    """``teacher: N sent (M cached), $X``: what a bootstrap report says the teacher was sent and cost."""
    sent, cached = report.teacher_requests, report.teacher_cache_hits or 0
    return f"teacher: {sent:,} sent ({cached:,} cached), ${report.cost_usd:.2f}"
