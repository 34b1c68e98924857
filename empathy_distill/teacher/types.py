"""Requests, results and usage shared by every teacher backend."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from empathy_distill.data.reports import TeacherUsage


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion: the cache key is a hash of everything that shapes the reply."""

    messages: tuple[tuple[str, str], ...]
    model: str
    temperature: float = 0.7
    max_tokens: int = 256
    seed: int | None = 0
    tag: str = ""  # e.g. the stage name; not part of the key

    @property
    def key(self) -> str:
        payload = json.dumps(
            {
                "model": self.model,
                "messages": self.messages,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "seed": self.seed,
            },
            sort_keys=True,
            ensure_ascii=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def openai_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def openai_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.openai_messages(),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        return body


@dataclass
class ChatResult:
    """A reply (``text`` may be empty) or an ``error``; ``cached`` when no request was sent."""

    key: str
    text: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None
    attempts: int = 0
    started_ns: int = 0  # wall clock when sent (0: never sent), for the request's trace span
    ended_ns: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class Usage(TeacherUsage):
    """Token and cost accounting, per stage tag: one teacher's live counter (a bootstrap report keeps its
    :meth:`as_dict` as the :class:`~empathy_distill.data.reports.TeacherUsage` record)."""

    def add(self, stage: str, result: ChatResult, cost: float) -> None:
        row = self.by_stage.setdefault(
            stage,
            {"requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "errors": 0},
        )
        if result.cached:
            self.cache_hits += 1
            row["cache_hits"] += 1
        else:
            self.requests += 1
            row["requests"] += 1
            self.retries += max(result.attempts - 1, 0)
            self.prompt_tokens += result.prompt_tokens
            self.completion_tokens += result.completion_tokens
            self.cost_usd += cost
            row["prompt_tokens"] += result.prompt_tokens
            row["completion_tokens"] += result.completion_tokens
            row["cost_usd"] += cost
        if result.error:
            self.errors += 1
            row["errors"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "retries": self.retries,
            "errors": self.errors,
            "by_stage": self.by_stage,
        }


class BudgetExhausted(Exception):
    """Raised inside a backend when the next request would pass the budget."""


class TeacherError(Exception):
    """A request failed after all retries; the message says why."""
