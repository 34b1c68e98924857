"""How many requests are in flight: up to ``teacher.concurrency``, fewer while the endpoint says 429.

Real endpoints cap requests (or tokens) per minute and answer ``429`` with ``Retry-After``
beyond it. A fixed concurrency either stays below the cap (the limit is wasted) or runs above
it (a storm of 429s, each a wasted round trip and, after the retries, a failed request).
:class:`AdaptiveLimit` finds the concurrency the endpoint allows, the way TCP finds a link's
rate (additive increase, multiplicative decrease):

- a success raises the limit by ``1 / limit`` (one more slot per round trip of successes);
- a 429 lowers it to ``decrease x limit`` once per window: only a request sent after the last
  decrease can lower it again (the 429s of one burst are one signal, as TCP counts one loss per
  window), and it holds new sends until its ``Retry-After`` has passed.

A request waiting out a backoff gives its slot back, so a retry never holds capacity it
is not using.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class AdaptiveLimit:
    """A concurrency limit between 1 and ``ceiling`` that follows the endpoint's 429s."""

    def __init__(self, ceiling: int, adaptive: bool = True, decrease: float = 0.9) -> None:
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.decrease = decrease
        self.limit = float(ceiling)
        self.lowest = float(ceiling)
        self.in_flight = 0
        self.rate_limited = 0
        self.window = 0
        """Counts decreases; a request carries the window it was sent in."""
        self._paused_until = 0.0
        self._cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> int:
        """Waits for a slot (and for any Retry-After pause); returns the window the request is sent in."""
        cond = self._condition()
        async with cond:
            while True:
                pause = self._paused_until - time.monotonic()
                if pause > 0:
                    # a release may come first, but sends stay held until the pause is over
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(cond.wait(), timeout=pause)
                    continue
                if self.in_flight < max(1, int(self.limit)):
                    break
                await cond.wait()
            self.in_flight += 1
            return self.window

    async def release(self) -> None:
        cond = self._condition()
        async with cond:
            self.in_flight -= 1
            # wake as many waiters as there are free slots (one, or more after the limit grew), not all of them:
            # with a thousand requests waiting, waking every one on every reply costs more than the replies
            cond.notify(max(1, int(self.limit) - self.in_flight))

    def succeeded(self) -> None:
        """One reply: one slot more per round trip of replies."""
        if self.adaptive and self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)

    def throttled(self, retry_after_s: float | None, window: int) -> None:
        """A 429 for a request sent in ``window``: fewer slots (once per window) and no new sends until
        ``retry_after_s`` has passed."""
        self.rate_limited += 1
        if not self.adaptive:
            return
        if window == self.window:
            self.limit = max(1.0, self.limit * self.decrease)
            self.lowest = min(self.lowest, self.limit)
            self.window += 1
        if retry_after_s:
            self._paused_until = max(self._paused_until, time.monotonic() + retry_after_s)
