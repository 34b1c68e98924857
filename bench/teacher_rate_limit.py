"""The teacher client under an endpoint's rate limit: adaptive concurrency vs fixed concurrency.

    .venv/bin/python bench/teacher_rate_limit.py [--rate 200] [--requests 3000] [--latency 0.2]

The loopback server runs in its own process and enforces ``--rate`` requests/s (a token bucket
holding a fifth of a second of requests, ``--burst``); beyond it, it answers 429 with
``retry-after-ms`` at once, as real endpoints do. The same
requests go through our client three ways, each with 6 retries and Retry-After honoured:
adaptive concurrency (ceiling 64), fixed 64 (above what the limit allows at this latency) and
fixed 16 (below it). For each: replies/s, the share of the allowed rate, 429s received and
requests that failed. The last line is

    adaptive_share=<adaptive replies/s / rate> adaptive_failed=<n> fixed64_share=... fixed64_failed=...
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import start_loopback  # noqa: E402

from empathy_distill.config import TeacherConfig  # noqa: E402
from empathy_distill.teacher.openai_client import OpenAITeacher  # noqa: E402


async def run(url: str, n: int, concurrency: int, adaptive: bool, offset: int) -> dict:
    cfg = TeacherConfig(
        base_url=url, model="loop", concurrency=concurrency, adaptive_concurrency=adaptive, max_retries=6
    )
    teacher = OpenAITeacher(cfg, cache=None)
    reqs = [teacher.request([("user", f"request {offset + i}: make it kinder")], tag="bench") for i in range(n)]
    start = time.perf_counter()
    results = await teacher.complete_many(reqs, desc="adaptive" if adaptive else f"fixed {concurrency}")
    elapsed = time.perf_counter() - start
    await teacher.aclose()
    ok = sum(r.ok for r in results)
    return {
        "rate": ok / elapsed,
        "failed": len(results) - ok,
        "throttled": teacher.limit.rate_limited,
        "seconds": elapsed,
        "lowest": teacher.limit.lowest,
        "final": teacher.limit.limit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s the endpoint allows")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--burst", type=int, default=None, help="token bucket size (default: rate / 5)")
    args = parser.parse_args()
    burst = args.burst or max(1, int(args.rate / 5))
    server, url = start_loopback("--latency", str(args.latency), "--rate-limit", str(args.rate), "--burst", str(burst))
    try:
        sides = {"adaptive": (64, True), "fixed64": (64, False), "fixed16": (16, False)}
        out = {}
        for i, (name, (concurrency, adaptive)) in enumerate(sides.items()):
            time.sleep(1.0)  # the bucket refills between runs
            out[name] = asyncio.run(run(url, args.requests, concurrency, adaptive, offset=i * args.requests))
            r = out[name]
            print(
                f"{name:>9}: {r['rate']:6.1f} replies/s = {r['rate'] / args.rate:.2f} of the {args.rate:.0f}/s allowed,"
                " "
                f"{r['throttled']:5d} x 429, {r['failed']} failed, {r['seconds']:.1f} s"
                + (
                    f" (concurrency settled at {r['final']:.0f}, lowest {r['lowest']:.0f})"
                    if name == "adaptive"
                    else ""
                ),
                flush=True,
            )
    finally:
        server.terminate()
        server.wait()
    print(" ".join(f"{name}_share={r['rate'] / args.rate:.3f} {name}_failed={r['failed']}" for name, r in out.items()))


if __name__ == "__main__":
    main()
