"""Request and cost budgets: checked before each request is sent (online) or submitted (batch)."""

from __future__ import annotations

import threading

from empathy_distill.config import TeacherConfig
from empathy_distill.teacher.types import BudgetExhausted, ChatRequest


class Budget:
    """Counts requests and cost; :meth:`reserve` raises once a limit is reached.

    A request already in flight when the cost cap is reached still completes, so
    the spend can pass ``max_cost_usd`` by at most ``concurrency`` requests.
    """

    def __init__(self, cfg: TeacherConfig, price_factor: float = 1.0) -> None:
        self.max_requests = cfg.max_requests
        self.max_cost_usd = cfg.max_cost_usd
        self.max_tokens = cfg.max_tokens
        self.in_per_1k = cfg.prices.input_per_1k * price_factor
        self.out_per_1k = cfg.prices.output_per_1k * price_factor
        self.requests = 0
        self.cost_usd = 0.0
        self.reserved_usd = 0.0  # worst-case cost of submitted batch requests not yet paid for
        self.exhausted: str | None = None
        self._lock = threading.Lock()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000 * self.in_per_1k + completion_tokens / 1000 * self.out_per_1k

    def reserve(self, worst_case_usd: float = 0.0) -> None:
        """Counts one request, or raises :class:`BudgetExhausted` when it does not fit.

        Online requests pass ``worst_case_usd=0`` and stop once the spend reaches the cap.
        Batch requests pass their worst-case cost, which is held until :meth:`release`, so a
        batch never holds more requests than the remaining budget could pay for.
        """
        with self._lock:
            if self.max_requests is not None and self.requests >= self.max_requests:
                self.exhausted = f"max_requests={self.max_requests} reached"
            elif self.max_cost_usd is not None and worst_case_usd == 0.0 and self.cost_usd >= self.max_cost_usd:
                self.exhausted = f"max_cost_usd={self.max_cost_usd} reached (spent ${self.cost_usd:.4f})"
            elif (
                self.max_cost_usd is not None
                and worst_case_usd > 0.0
                and self.cost_usd + self.reserved_usd + worst_case_usd > self.max_cost_usd
            ):
                self.exhausted = (
                    f"max_cost_usd={self.max_cost_usd} would be passed (spent ${self.cost_usd:.4f}, "
                    f"held ${self.reserved_usd:.4f} for submitted requests, next needs up to ${worst_case_usd:.4f})"
                )
            if self.exhausted:
                raise BudgetExhausted(self.exhausted)
            self.requests += 1
            self.reserved_usd += worst_case_usd

    def release(self, worst_case_usd: float) -> None:
        """Frees a held worst-case amount once the real cost is known (and spent)."""
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - worst_case_usd)

    def spend(self, prompt_tokens: int, completion_tokens: int) -> float:
        cost = self.cost(prompt_tokens, completion_tokens)
        with self._lock:
            self.cost_usd += cost
        return cost

    def worst_case_cost(self, req: ChatRequest) -> float:
        """A request's cost if its reply uses every token of ``max_tokens``.

        Prompt tokens are over-estimated as one per 3 bytes of UTF-8 (English text averages
        about 4 characters a token) plus 8 per message for the chat framing.
        """
        prompt_tokens = sum(len(content.encode("utf-8")) // 3 + 1 + 8 for _, content in req.messages)
        return self.cost(prompt_tokens, req.max_tokens)
