"""A local model as the teacher or an LLM judge, in process (``backend: local``): the serving engine without the HTTP.

The model loads exactly as ``serve --base`` loads it (``serving/base_model.py``: a packaged preset such as
``smollm2-135m-instruct``, a ``.gguf`` file, a folder, a hub id) and its requests go through the same engine:
continuous batching across the concurrent requests, the packed decoding pass, a per-request seed when sampling.
One path, two doors: ``serve --base`` puts that model behind HTTP for other processes (``backend: openai`` with
``base_url`` at it), ``backend: local`` keeps it in this one. Same cache and budget as the remote backends; token
counts are the model's own tokenizer's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

from empathy_distill.config import StudentConfig, TeacherConfig
from empathy_distill.serving.api import ApiError
from empathy_distill.teacher.budget import Budget
from empathy_distill.teacher.cache import ReplyCache
from empathy_distill.teacher.openai_client import BUDGET_ERROR
from empathy_distill.teacher.types import BudgetExhausted, ChatRequest, ChatResult, Usage

logger = logging.getLogger(__name__)


class LocalTeacher:
    """Generates with a local model (``cfg.model``: a preset, ``.gguf``, folder or hub id), batched by the engine."""

    def __init__(self, cfg: TeacherConfig, cache: ReplyCache | None = None, budget: Budget | None = None) -> None:
        self.cfg = cfg
        self.cache = cache
        self.budget = budget or Budget(cfg)
        self.usage = Usage()
        self._pool = None
        self._loading = threading.Lock()

    def request(self, messages: Sequence[tuple[str, str]], tag: str = "") -> ChatRequest:
        return ChatRequest(
            tuple(messages), self.cfg.model, self.cfg.temperature, self.cfg.max_tokens, self.cfg.seed, tag
        )

    def _load(self):
        with self._loading:  # the first requests of a batch arrive together: one load
            if self._pool is None:
                # import-time: serving.base_model 0.8 s to import (teacher.local alone 0.3 s)
                from empathy_distill.serving.base_model import BasePool

                max_batch = min(self.cfg.concurrency, 32)
                self._pool = BasePool(self.cfg.model, StudentConfig().cache_dir, max_batch=max_batch)
            return self._pool

    async def _generate(self, req: ChatRequest) -> ChatResult:

        pool = await asyncio.to_thread(self._load)
        version = pool.versions["base"]
        settings = {"temperature": req.temperature, "seed": req.seed}
        job = pool.submit(version, req.openai_messages(), req.max_tokens, settings)
        try:
            reply = await asyncio.wrap_future(job.future)
        except ApiError as exc:  # a prompt over the model's context: this request fails, the run goes on
            return ChatResult(key=req.key, error=f"local model refused the request: {exc.message}", attempts=1)
        return ChatResult(
            key=req.key,
            text=reply.text,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            attempts=1,
        )

    async def complete(self, req: ChatRequest) -> ChatResult:
        if self.cache is not None and (hit := self.cache.get(req.key)) is not None:
            self.usage.add(req.tag, hit, 0.0)
            return hit
        try:
            self.budget.reserve()
        except BudgetExhausted as exc:
            return ChatResult(key=req.key, error=f"{BUDGET_ERROR}: {exc}")
        started = time.time_ns()
        result = await self._generate(req)
        result.started_ns, result.ended_ns = started, time.time_ns()
        if self.cache is not None:
            self.cache.put(req, result)
        self.usage.add(req.tag, result, 0.0)
        return result

    async def complete_many(self, requests: Sequence[ChatRequest], desc: str = "teacher") -> list[ChatResult]:
        """All at once, ``concurrency`` at most in the engine's batch; results in the requests' order."""
        from tqdm.auto import tqdm

        gate = asyncio.Semaphore(self.cfg.concurrency)
        bar = tqdm(total=len(requests), desc=desc, unit="req", disable=None)

        async def one(req: ChatRequest) -> ChatResult:
            async with gate:
                result = await self.complete(req)
            bar.update(1)
            return result

        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            bar.close()

    async def aclose(self) -> None:
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)
            self._pool = None
