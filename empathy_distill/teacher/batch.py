"""The OpenAI Batch API as a teacher backend: half the price, hours of latency, resumable.

Requests missing from the cache are written to a JSONL file (``custom_id`` = the
request's cache key), uploaded, and run as one batch. Only as many requests are
submitted as the cost budget covers at their worst case (prompt plus ``max_tokens``
at the batch price), since a submitted batch cannot be stopped half-way; the batch id is recorded in
the cache database before polling starts, so a rerun after a crash or a timeout
resumes the same batch instead of paying for it twice. Results merge into the
reply cache, and from there into the bootstrap.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Sequence

from empathy_distill.teacher.openai_client import BUDGET_ERROR, OpenAITeacher
from empathy_distill.teacher.types import BudgetExhausted, ChatRequest, ChatResult, TeacherError

logger = logging.getLogger(__name__)

_DONE = ("completed", "failed", "expired", "cancelled")


class BatchTeacher(OpenAITeacher):
    """Same interface as :class:`OpenAITeacher`; ``complete_many`` goes through one batch."""

    def __init__(self, cfg, cache, budget=None) -> None:
        if cache is None:
            raise ValueError("batch mode needs the reply cache (it is where results and batch ids live)")
        super().__init__(cfg, cache, budget)
        self.budget.in_per_1k *= cfg.prices.batch_discount
        self.budget.out_per_1k *= cfg.prices.batch_discount

    async def _wait(self, batch_id: str):
        client = self._openai()
        start = time.monotonic()
        while True:
            batch = await client.batches.retrieve(batch_id)
            if batch.status in _DONE:
                return batch
            if time.monotonic() - start > self.cfg.batch_timeout_s:
                raise TeacherError(
                    f"batch {batch_id} still '{batch.status}' after {self.cfg.batch_timeout_s:.0f} s; rerun to "
                    "resume it"
                )
            logger.info("batch %s: %s", batch_id, batch.status)
            await asyncio.sleep(self.cfg.batch_poll_s)

    async def _merge(self, batch_id: str, keys: list[str], by_key: dict[str, ChatRequest]) -> set[str]:
        """Waits for the batch, stores its replies in the cache and counts each as one request; returns their keys."""
        client = self._openai()
        batch = await self._wait(batch_id)
        if batch.status != "completed" or not batch.output_file_id:
            self.cache.record_batch(batch_id, keys, batch.status)
            raise TeacherError(f"batch {batch_id} ended '{batch.status}'")
        content = await client.files.content(batch.output_file_id)
        merged: set[str] = set()
        for line in content.text.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            req = by_key.get(item.get("custom_id"))
            body = (item.get("response") or {}).get("body") or {}
            if req is None or item.get("error") or not body.get("choices"):
                continue
            usage = body.get("usage") or {}
            result = ChatResult(
                key=req.key,
                text=body["choices"][0]["message"].get("content") or "",
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
                attempts=1,
            )
            cost = self.budget.spend(result.prompt_tokens, result.completion_tokens)
            self.cache.put(req, result)
            self.usage.add(req.tag, result, cost)
            merged.add(req.key)
        self.cache.record_batch(batch_id, keys, "merged")
        return merged

    async def complete_many(self, requests: Sequence[ChatRequest], desc: str = "teacher") -> list[ChatResult]:
        by_key = {r.key: r for r in requests}
        counted: set[str] = set()  # replies already counted (as requests) by a merge in this call
        # 1. resume batches a previous run submitted
        for batch_id, keys in self.cache.open_batches():
            if any(k in by_key and k not in self.cache for k in keys):
                logger.warning("resuming batch %s (%d requests)", batch_id, len(keys))
                counted |= await self._merge(batch_id, keys, by_key)
        # 2. submit what is still missing, as far as the budget covers its worst case
        missing = [r for r in dict.fromkeys(r for r in requests if r.key not in self.cache)]
        submit: list[ChatRequest] = []
        held = 0.0
        for req in missing:
            worst = self.budget.worst_case_cost(req)
            try:
                self.budget.reserve(worst_case_usd=worst)
            except BudgetExhausted:
                logger.warning(
                    "batch budget: %d of %d missing requests fit (%s)", len(submit), len(missing), self.budget.exhausted
                )
                break
            held += worst
            submit.append(req)
        if submit:
            lines = [
                json.dumps(
                    {"custom_id": r.key, "method": "POST", "url": "/v1/chat/completions", "body": r.openai_body()}
                )
                for r in submit
            ]
            client = self._openai()
            upload = await client.files.create(
                file=(f"{desc}.jsonl", io.BytesIO(("\n".join(lines) + "\n").encode()), "application/jsonl"),
                purpose="batch",
            )
            batch = await client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            keys = [r.key for r in submit]
            self.cache.record_batch(batch.id, keys, batch.status)
            logger.warning(
                "submitted batch %s with %d requests (%s), worst case $%.4f", batch.id, len(submit), desc, held
            )
            try:
                counted |= await self._merge(batch.id, keys, by_key)
            finally:
                self.budget.release(held)
        # 3. everything now comes from the cache (or is reported missing)
        results = []
        for req in requests:
            hit = self.cache.get(req.key)
            if hit is None:
                reason = (
                    f"{BUDGET_ERROR}: {self.budget.exhausted}"
                    if self.budget.exhausted
                    else "missing from the batch output"
                )
                results.append(ChatResult(key=req.key, error=reason))
            else:
                if req.key not in counted:  # a reply from an earlier run: a cache hit, counted once
                    self.usage.add(req.tag, hit, 0.0)
                results.append(hit)
        return results
