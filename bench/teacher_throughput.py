"""Teacher client throughput: ours (cold, then warm from the cache) vs a plain AsyncOpenAI loop.

    .venv/bin/python bench/teacher_throughput.py [--requests 1000] [--concurrency 64] [--latency 0.2]

The loopback server runs in its own process (the second core) with log-normal
latency (mean 200 ms, sigma 0.6), as real endpoints jitter; each prompt's latency is drawn
from the prompt itself, so that every phase meets the same latencies and the ratio compares
the clients, not two draws of the tail. In one run:
1. reference: plain ``openai.AsyncOpenAI`` calls under ``asyncio.Semaphore(64)``,
   no cache, no retries;
2. ours, cold: a fresh reply cache, retries on, budget and usage accounting on;
3. ours, warm: the same requests again, all from the cache;
4. ours, cold, traced: as 2 inside an MLflow run (SQLite store), the stage's trace written and flushed in the
   timed part, with the default sampling (``teacher.tracing``: at most 64 request spans), then with every request
   traced.
Each timed phase runs ``--reps`` times (3), the sides alternating, and the fastest run counts, so a warm-up hiccup does
not decide the ratio. The last line is

    ratio_vs_plain=<ours cold / reference throughput> ratio_vs_ideal=<ours cold / (concurrency / latency)>
    cache_speedup=<cold time / warm time>
    traced_throughput_ratio=<ours cold / ours cold traced (default)> every_request_traced_ratio=<... every request>
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import start_loopback  # noqa: E402

from empathy_distill.config import TeacherConfig, TraceSettings  # noqa: E402
from empathy_distill.teacher.cache import ReplyCache  # noqa: E402
from empathy_distill.teacher.openai_client import OpenAITeacher  # noqa: E402
from empathy_distill.tracing import flush, trace_requests, tracing_active  # noqa: E402


def messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You rewrite replies to be more empathetic."},
        {"role": "user", "content": f"Request number {i}: make it kinder."},
    ]


async def plain(url: str, n: int, concurrency: int) -> float:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with sem:
            resp = await client.chat.completions.create(
                model="loop", messages=messages(i), temperature=0.7, max_tokens=256
            )
            return resp.choices[0].message.content

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await client.close()
    return elapsed


async def ours(
    url: str, n: int, concurrency: int, cache_path: Path, tracing: TraceSettings | None = None
) -> tuple[float, int]:
    """Our client; with ``tracing``, inside an MLflow run, the stage's trace is recorded in the timed part, as the
    bootstrap step records it (MLflow's writer threads store it afterwards: timed apart, see main)."""
    cfg = TeacherConfig(
        base_url=url,
        model="loop",
        concurrency=concurrency,
        cache_path=str(cache_path),
        max_retries=6,
        tracing=tracing or TraceSettings(),
    )
    teacher = OpenAITeacher(cfg, ReplyCache(cache_path))
    reqs = [teacher.request([(m["role"], m["content"]) for m in messages(i)], tag="bench") for i in range(n)]
    start_ns = time.time_ns()
    start = time.perf_counter()
    results = await teacher.complete_many(reqs, desc="ours")
    if tracing is not None:
        assert tracing_active()
        outcomes = ["parsed" if r.ok else f"error: {r.error}" for r in results]
        trace_requests(
            "teacher bench",
            reqs,
            results,
            outcomes,
            settings=tracing,
            endpoint=url,
            prompt=None,
            stage_start_ns=start_ns,
        )
    elapsed = time.perf_counter() - start
    await teacher.aclose()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return elapsed, teacher.usage.cache_hits


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--reps", type=int, default=3, help="runs of each phase (the fastest counts)")
    args = parser.parse_args()
    n, c = args.requests, args.concurrency
    server, url = start_loopback("--latency", str(args.latency), "--sigma", "0.6", "--latency-per-prompt")
    try:
        tmp = Path(tempfile.mkdtemp())
        ref_times, cold_times, warm_times, traced_times, all_times = [], [], [], [], []
        drain, drain_all = [], []
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        mlflow.set_experiment("teacher-bench")
        default, everything = TraceSettings(), TraceSettings(sample_rate=1.0, max_request_spans=None)
        for rep in range(args.reps):
            ref_times.append(asyncio.run(plain(url, n, c)))
            cache = tmp / f"cache{rep}.sqlite"
            cold, hits = asyncio.run(ours(url, n, c, cache))
            assert hits == 0
            warm, hits = asyncio.run(ours(url, n, c, cache))
            assert hits == n
            with mlflow.start_run():  # the same cold work, traced as a tracked step traces it
                traced, _ = asyncio.run(ours(url, n, c, tmp / f"traced{rep}.sqlite", default))
            drain.append(timed(flush))  # MLflow storing the trace on its threads (its queue polls once a second)
            with mlflow.start_run():
                every, _ = asyncio.run(ours(url, n, c, tmp / f"all{rep}.sqlite", everything))
            drain_all.append(timed(flush))
            cold_times.append(cold)
            warm_times.append(warm)
            traced_times.append(traced)
            all_times.append(every)
            print(
                f"run {rep + 1}: reference {ref_times[-1]:.2f} s, ours cold {cold:.2f} s, ours warm {warm:.3f} s, "
                f"cold traced (default: {default.max_request_spans} spans) {traced:.2f} s, cold traced (every "
                f"request) {every:.2f} s",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(10)
    ref, cold, warm = min(ref_times), min(cold_times), min(warm_times)
    ideal = n / (c / args.latency)
    print(f"{n} requests, concurrency {c}, latency mean {args.latency * 1000:.0f} ms (log-normal, sigma 0.6)")
    print(
        f"reference {n / ref:.0f} req/s, ours cold {n / cold:.0f} req/s, ours warm {n / warm:.0f} req/s, ideal "
        f"{n / ideal:.0f} req/s"
    )
    per_rep = [r / o for r, o in zip(ref_times, cold_times)]
    print(
        f"ratio_vs_plain={ref / cold:.3f} ratio_spread={max(per_rep) - min(per_rep):.3f} "
        f"ratio_vs_ideal={ideal / cold:.3f} cache_speedup={cold / warm:.1f}"
    )
    # tracing's cost: throughput traced / untraced, fastest runs, and the spread of the per-run ratios
    traced_rep = [o / t for o, t in zip(cold_times, traced_times)]
    all_rep = [o / t for o, t in zip(cold_times, all_times)]
    print(
        f"traced_throughput_ratio={cold / min(traced_times):.3f} (spread {max(traced_rep) - min(traced_rep):.3f}, "
        f"goal >= 0.95) every_request_traced_ratio={cold / min(all_times):.3f} "
        f"(spread {max(all_rep) - min(all_rep):.3f})"
    )
    print(
        f"then waiting for MLflow to store the trace (flush, outside the timed stage; its queue polls once a second): "
        f"default {min(drain):.2f} s, every request {min(drain_all):.2f} s"
    )


if __name__ == "__main__":
    main()
