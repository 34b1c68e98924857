"""Against an endpoint that enforces a rate limit (429 with retry-after-ms beyond it), the adaptive client
loses no request and sends far fewer requests into the limit than a fixed concurrency does."""

from __future__ import annotations

import asyncio

from empathy_distill.config import TeacherConfig
from empathy_distill.teacher.openai_client import OpenAITeacher
from empathy_distill.testing.loopback import LoopbackServer


def run(server: LoopbackServer, adaptive: bool, n: int, offset: int) -> tuple[OpenAITeacher, int]:
    """The teacher after ``n`` requests, and how many of them failed (9 attempts, all refused)."""
    cfg = TeacherConfig(base_url=server.base_url, model="loop", concurrency=48, adaptive_concurrency=adaptive)
    teacher = OpenAITeacher(cfg.model_copy(update={"max_retries": 8}), cache=None)
    requests = [teacher.request([("user", f"request {offset + i}")]) for i in range(n)]

    async def go():
        try:
            return await teacher.complete_many(requests)
        finally:
            await teacher.aclose()

    return teacher, sum(not r.ok for r in asyncio.run(go()))


def test_adaptive_concurrency_under_a_rate_limit():
    with LoopbackServer(latency_mean_s=0.05, rate_limit_per_s=150, rate_burst=5, seed=1) as server:
        fixed, _ = run(server, adaptive=False, n=300, offset=0)  # 48 at 50 ms asks 960/s of a 150/s endpoint
        adaptive, failed = run(server, adaptive=True, n=300, offset=300)
    assert failed == 0  # every request answered, none given up after its retries
    assert fixed.limit.rate_limited > 0 and adaptive.limit.lowest < 48
    assert adaptive.limit.rate_limited < fixed.limit.rate_limited / 2
