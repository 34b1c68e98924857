"""The OpenAI-compatible teacher: bounded concurrency, retries with backoff, cache, budget.

Works with any server that speaks the chat-completions wire format (OpenAI,
vLLM, TGI, Ollama, LiteLLM, ...). Retries cover 429 (``Retry-After`` honoured),
5xx, timeouts, dropped connections and malformed replies; other 4xx fail at once.
Requests run free-flowing under one semaphore (no batch barriers), so a slow
reply never holds back the rest.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
from collections.abc import Sequence

from empathy_distill.config import TeacherConfig
from empathy_distill.errors import ConfigError
from empathy_distill.teacher.budget import Budget
from empathy_distill.teacher.cache import ReplyCache
from empathy_distill.teacher.limiter import AdaptiveLimit
from empathy_distill.teacher.types import BudgetExhausted, ChatRequest, ChatResult, Usage

logger = logging.getLogger(__name__)

BUDGET_ERROR = "budget"


def resolve_api_key(cfg: TeacherConfig) -> str:
    """The key from the environment variable named in config.

    Loopback and other local endpoints need none: a placeholder is used there.

    Raises:
        ConfigError: a remote endpoint and the variable is unset.
    """
    key = os.environ.get(cfg.api_key_env, "")
    if key:
        return key
    base = cfg.base_url or ""
    if base.startswith(("http://127.", "http://localhost", "http://[::1]")):
        return "not-needed"
    raise ConfigError(
        f"teacher.api_key_env: environment variable {cfg.api_key_env} is not set (the key is read from it)"
    )


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds from a ``Retry-After`` / ``retry-after-ms`` header, if the error carries one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


def describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    return f"HTTP {status} {name}" if status else f"{name}: {str(exc)[:120]}"


class OpenAITeacher:
    """``complete``/``complete_many`` over ``openai.AsyncOpenAI``, with cache and budget."""

    price_factor = 1.0

    def __init__(self, cfg: TeacherConfig, cache: ReplyCache | None = None, budget: Budget | None = None) -> None:
        self.cfg = cfg
        self.cache = cache
        self.budget = budget or Budget(cfg, self.price_factor)
        self.usage = Usage()
        self._api_key = resolve_api_key(cfg)
        self._client = None
        self.limit = AdaptiveLimit(cfg.concurrency, adaptive=cfg.adaptive_concurrency)

    def _openai(self):
        if self._client is None:
            from openai import AsyncOpenAI

            # the SDK's default pool (1,000 connections, 100 kept alive) covers our concurrency
            self._client = AsyncOpenAI(
                base_url=self.cfg.base_url,
                api_key=self._api_key,
                max_retries=0,  # retries are ours: counted, jittered, Retry-After honoured
                timeout=self.cfg.timeout_s,
            )
        return self._client

    def request(self, messages: Sequence[tuple[str, str]], tag: str = "") -> ChatRequest:
        """A request with this teacher's model and generation settings."""
        return ChatRequest(
            messages=tuple((r, c) for r, c in messages),
            model=self.cfg.model,
            temperature=self.cfg.temperature,
            max_tokens=self.cfg.max_tokens,
            seed=self.cfg.seed,
            tag=tag,
        )

    async def _send(self, req: ChatRequest, window: int) -> ChatResult:
        """Sends with retries; ``window`` is the limiter's window of the slot held on entry."""
        import openai

        retryable = (
            openai.RateLimitError,
            openai.InternalServerError,
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.APIResponseValidationError,
            ValueError,
        )
        last: BaseException | None = None
        for attempt in range(1, self.cfg.max_retries + 2):
            if attempt > 1:
                window = await self.limit.acquire()  # the slot was given back for the backoff
            try:
                resp = await self._openai().chat.completions.create(**req.openai_body())
                self.limit.succeeded()
                text = resp.choices[0].message.content if resp.choices else None
                usage = resp.usage
                return ChatResult(
                    key=req.key,
                    text=text or "",
                    prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                    completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                    attempts=attempt,
                )
            except openai.APIStatusError as exc:
                last = exc
                if exc.status_code == 429:
                    self.limit.throttled(retry_after_s(exc), window)
                elif exc.status_code < 500:
                    return ChatResult(
                        key=req.key, error=f"teacher refused the request: {describe(exc)}", attempts=attempt
                    )
            except retryable as exc:  # ValueError covers malformed JSON bodies
                last = exc
            if attempt > self.cfg.max_retries:
                break
            backoff = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (attempt - 1)) * random.uniform(
                0.5, 1.0
            )
            wait = retry_after_s(last)
            await self.limit.release()  # nobody's slot is held through a backoff
            await asyncio.sleep(wait if wait is not None else backoff)
        return ChatResult(
            key=req.key,
            error=f"teacher request failed after {self.cfg.max_retries + 1} attempts (last: {describe(last)})",
            attempts=self.cfg.max_retries + 1,
        )

    def cached(self, req: ChatRequest) -> ChatResult | None:
        """The cached reply (counted as a cache hit), or None."""
        if self.cache is not None and (hit := self.cache.get(req.key)) is not None:
            self.usage.add(req.tag, hit, 0.0)
            return hit
        return None

    async def complete(self, req: ChatRequest) -> ChatResult:
        """One reply: from the cache, or sent (within the budget) and cached at once."""
        if (hit := self.cached(req)) is not None:
            return hit
        return await self._complete_uncached(req)

    async def _complete_uncached(self, req: ChatRequest) -> ChatResult:
        started = time.time_ns()
        window = await self.limit.acquire()
        try:
            try:
                self.budget.reserve()
            except BudgetExhausted as exc:
                return ChatResult(key=req.key, error=f"{BUDGET_ERROR}: {exc}")
            result = await self._send(req, window)
        finally:
            await self.limit.release()
        result.started_ns, result.ended_ns = started, time.time_ns()
        cost = self.budget.spend(result.prompt_tokens, result.completion_tokens)
        if self.cache is not None:
            self.cache.put(req, result)
        self.usage.add(req.tag, result, cost)
        return result

    async def complete_many(self, requests: Sequence[ChatRequest], desc: str = "teacher") -> list[ChatResult]:
        """All replies, in order, with a progress bar (rate, ETA, cache hits, retries)."""
        from tqdm.auto import tqdm

        results: list[ChatResult | None] = [self.cached(r) for r in requests]
        bar = tqdm(total=len(requests), desc=desc, unit="req", disable=None, mininterval=0.5)
        # every request is looked up in the cache before any is sent, so a prompt that occurs twice in a stage is
        # sent twice whatever the timing (as when each request had its own task), never once or twice by chance
        misses = [i for i, r in enumerate(results) if r is None]
        bar.update(len(requests) - len(misses))
        queue = iter(misses)  # shared by the workers: each index is taken once

        async def worker() -> None:
            for i in queue:
                results[i] = await self._complete_uncached(requests[i])
                bar.update(1)
                bar.set_postfix(
                    cache_hits=self.usage.cache_hits,
                    retries=self.usage.retries,
                    errors=self.usage.errors,
                    refresh=False,
                )

        try:
            # a fixed pool of workers, not a task per request: 87,000 waiting tasks (a stage at 100k dialogues) were
            # live objects that every full collection of the cyclic GC walked, so its cost per request grew with the
            # stage. Twice the ceiling: a request waiting out a backoff gives its slot back, another worker takes it
            await asyncio.gather(*(worker() for _ in range(min(len(misses), 2 * self.limit.ceiling))))
        finally:
            bar.close()
        return [r for r in results if r is not None]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        self.limit._cond = None  # the next event loop makes its own
