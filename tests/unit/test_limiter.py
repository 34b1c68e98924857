"""The adaptive concurrency limit: fewer slots on 429 (once per window of requests), more on replies, sends
held through Retry-After, a ceiling it never passes."""

from __future__ import annotations

import asyncio
import time

from empathy_distill.teacher.limiter import AdaptiveLimit


def test_429s_of_one_window_lower_the_limit_once_then_replies_raise_it():
    limit = AdaptiveLimit(ceiling=40, decrease=0.5)
    window = limit.window  # three requests sent together, all refused
    for _ in range(3):
        limit.throttled(None, window)
    assert limit.limit == 20 and limit.rate_limited == 3
    limit.throttled(None, limit.window)  # a request sent after the decrease: a new signal
    assert limit.limit == 10
    for _ in range(10):  # one round trip of replies: one slot more
        limit.succeeded()
    assert 10.9 < limit.limit < 11.1
    for _ in range(10_000):
        limit.succeeded()
    assert limit.limit == 40 and limit.lowest == 10  # never above the configured concurrency


def test_a_fixed_limit_counts_429s_but_does_not_move():
    limit = AdaptiveLimit(ceiling=8, adaptive=False)
    limit.throttled(0.5, limit.window)
    assert limit.limit == 8 and limit.rate_limited == 1


def test_acquire_waits_for_a_free_slot_and_for_retry_after():
    async def scenario() -> tuple[int, float]:
        limit = AdaptiveLimit(ceiling=2)
        await limit.acquire()
        await limit.acquire()
        third = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0.05)
        blocked = not third.done()
        await limit.release()
        await asyncio.wait_for(third, 1)
        assert blocked and limit.in_flight == 2
        await limit.release()
        await limit.release()
        limit.throttled(0.3, limit.window)  # the endpoint said: not before 0.3 s
        start = time.monotonic()
        window = await limit.acquire()
        assert window == 1  # sent after the decrease
        return limit.in_flight, time.monotonic() - start

    in_flight, waited = asyncio.run(scenario())
    assert in_flight == 1 and waited >= 0.25
