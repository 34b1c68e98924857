"""Request and cost budgets: checked before each request is sent."""

from __future__ import annotations

import threading

from empathy_distill.config import TeacherConfig
from empathy_distill.teacher.types import BudgetExhausted


class Budget:
    """Counts requests and cost; :meth:`reserve` raises once a limit is reached.

    A request already in flight when the cost cap is reached still completes, so
    the spend can pass ``max_cost_usd`` by at most ``concurrency`` requests.
    """

    def __init__(self, cfg: TeacherConfig, price_factor: float = 1.0) -> None:
        self.max_requests = cfg.max_requests
        self.max_cost_usd = cfg.max_cost_usd
        self.in_per_1k = cfg.prices.input_per_1k * price_factor
        self.out_per_1k = cfg.prices.output_per_1k * price_factor
        self.requests = 0
        self.cost_usd = 0.0
        self.exhausted: str | None = None
        self._lock = threading.Lock()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000 * self.in_per_1k + completion_tokens / 1000 * self.out_per_1k

    def reserve(self) -> None:
        with self._lock:
            if self.max_requests is not None and self.requests >= self.max_requests:
                self.exhausted = f"max_requests={self.max_requests} reached"
            elif self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
                self.exhausted = f"max_cost_usd={self.max_cost_usd} reached (spent ${self.cost_usd:.4f})"
            if self.exhausted:
                raise BudgetExhausted(self.exhausted)
            self.requests += 1

    def spend(self, prompt_tokens: int, completion_tokens: int) -> float:
        cost = self.cost(prompt_tokens, completion_tokens)
        with self._lock:
            self.cost_usd += cost
        return cost
