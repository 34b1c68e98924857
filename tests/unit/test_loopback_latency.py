"""The loopback server's per-prompt latency: what lets the teacher benchmark compare clients, not draws."""

from __future__ import annotations

import statistics

from empathy_distill.testing.loopback import LoopbackServer


def prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"request {i}"}]


def test_the_same_prompt_meets_the_same_latency_whenever_it_is_sent():
    server = LoopbackServer(latency_mean_s=0.2, latency_per_prompt=True, seed=3)
    first = [server._latency(prompt(i)) for i in range(200)]
    again = [server._latency(prompt(i)) for i in reversed(range(200))][::-1]
    assert first == again
    assert len(set(first)) == 200  # still a spread of latencies, one per prompt
    assert abs(statistics.mean(first) - 0.2) < 0.03  # log-normal with the configured mean
    other_seed = LoopbackServer(latency_mean_s=0.2, latency_per_prompt=True, seed=4)
    assert other_seed._latency(prompt(0)) != first[0]


def test_without_it_each_request_draws_anew():
    server = LoopbackServer(latency_mean_s=0.2, seed=3)
    assert server._latency(prompt(0)) != server._latency(prompt(0))
