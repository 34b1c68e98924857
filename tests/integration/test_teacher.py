"""The teacher client against the loopback OpenAI server: retries, Retry-After, timeouts,
budget, cache, batch mode and the local backend."""

from __future__ import annotations

import asyncio
import time

import pytest

from empathy_distill.config import PriceConfig, TeacherConfig
from empathy_distill.teacher import build_teacher
from empathy_distill.teacher.batch import BatchTeacher
from empathy_distill.teacher.cache import ReplyCache
from empathy_distill.teacher.openai_client import OpenAITeacher
from empathy_distill.teacher.types import TeacherError
from empathy_distill.testing.loopback import LoopbackServer


def cfg(server, tmp_path, **kw) -> TeacherConfig:
    base = {
        "base_url": server.base_url,
        "model": "loop",
        "cache_path": str(tmp_path / "cache.sqlite"),
        "backoff_base_s": 0.01,
        "timeout_s": 5,
    }
    return TeacherConfig(**{**base, **kw})


def ask(teacher, n: int, offset: int = 0):
    reqs = [teacher.request([("system", "s"), ("user", f"message {i}")], tag="test") for i in range(offset, offset + n)]

    async def run():
        try:
            return await teacher.complete_many(reqs)
        finally:
            await teacher.aclose()

    return reqs, asyncio.run(run())


def test_retries_every_fault_kind_and_honours_retry_after(tmp_path):
    with LoopbackServer(faults=["429", "500", "malformed", "drop", "429"], retry_after_s=0.3) as server:
        teacher = OpenAITeacher(cfg(server, tmp_path, concurrency=1))
        start = time.monotonic()
        _, results = ask(teacher, 1)
        elapsed = time.monotonic() - start
    assert results[0].ok and results[0].text
    assert results[0].attempts == 6
    assert teacher.usage.retries == 5
    assert elapsed >= 0.6  # two Retry-After waits of 0.3 s; the backoff alone would be ~0.15 s
    assert server.statuses["200"] == 1 and server.received == 6


def test_many_requests_run_on_a_fixed_pool_of_tasks_not_one_task_each(tmp_path):
    """complete_many keeps twice the concurrency of tasks alive, whatever the number of requests (a task per
    request was 87,000 live tasks at a stage of 100k dialogues, walked by every full collection of the GC).

    Only tasks running our code are counted: the HTTP library starts a short-lived task of its own for each
    connection it opens (anyio's ``connect_tcp``), and one of those, caught alive when the scheduler ran late,
    once made the count 10 (CI at stop 47)."""
    with LoopbackServer() as server:
        teacher = OpenAITeacher(cfg(server, tmp_path, concurrency=4))
        send, alive = teacher._send, []

        def ours(task: asyncio.Task) -> bool:
            return "site-packages" not in task.get_coro().cr_code.co_filename

        async def counting(req, window):
            alive.append(sum(map(ours, asyncio.all_tasks())))
            return await send(req, window)

        teacher._send = counting
        reqs, results = ask(teacher, 300)
    assert [r.key for r in results] == [q.key for q in reqs] and all(r.ok for r in results)  # all, in order
    assert server.received == 300 and len(alive) == 300
    assert max(alive) <= 2 * 4 + 1  # the workers and asyncio.run's own task


def test_request_that_hangs_past_the_timeout_is_retried(tmp_path):
    with LoopbackServer(faults=["hang"], hang_s=5) as server:
        teacher = OpenAITeacher(cfg(server, tmp_path, timeout_s=0.5))
        _, results = ask(teacher, 1)
    assert results[0].ok and results[0].attempts == 2


def test_exhausted_retries_give_a_clear_error_not_an_exception(tmp_path):
    with LoopbackServer(fault_rates={"500": 1.0}) as server:
        teacher = OpenAITeacher(cfg(server, tmp_path, max_retries=2))
        _, results = ask(teacher, 2)
    assert [r.error for r in results] == [
        "teacher request failed after 3 attempts (last: HTTP 500 InternalServerError)"
    ] * 2
    assert server.received == 6
    assert len(ReplyCache(tmp_path / "cache.sqlite")) == 0  # errors are never cached


def test_cache_makes_a_rerun_send_nothing(tmp_path):
    with LoopbackServer() as server:
        reqs, first = ask(OpenAITeacher(cfg(server, tmp_path), ReplyCache(tmp_path / "c.sqlite")), 20)
        again = OpenAITeacher(cfg(server, tmp_path), ReplyCache(tmp_path / "c.sqlite"))
        _, second = ask(again, 20)
        assert server.received == 20
    assert [r.text for r in first] == [r.text for r in second]
    assert all(r.cached for r in second) and again.usage.cache_hits == 20 and again.usage.requests == 0


def test_one_cache_never_answers_for_another_endpoint(tmp_path):
    """Two servers with the same model name and one cache file: the second gets every request itself."""
    with LoopbackServer() as first, LoopbackServer() as second:
        ask(build_teacher(cfg(first, tmp_path)), 10)
        _, replies = ask(build_teacher(cfg(second, tmp_path)), 10)
        assert first.received == 10 and second.received == 10
        assert not any(r.cached for r in replies)
        again = build_teacher(cfg(first, tmp_path))
        ask(again, 10)  # and each endpoint still finds its own
        assert first.received == 10 and again.usage.cache_hits == 10


def test_a_cache_from_before_endpoint_keys_is_adopted_by_its_first_endpoint_only(tmp_path):
    import sqlite3

    from empathy_distill.teacher import endpoint_of

    with LoopbackServer() as old, LoopbackServer() as other:
        reqs, _ = ask(OpenAITeacher(cfg(old, tmp_path)), 5)
        # the old format: rows under the bare request key, no meta table
        with sqlite3.connect(tmp_path / "legacy.sqlite") as db:
            db.execute(
                "CREATE TABLE replies (key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL, text TEXT, "
                "prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0, "
                "created REAL NOT NULL)"
            )
            db.executemany(
                "INSERT INTO replies VALUES (?, 'loop', '[]', ?, 1, 1, 0)",
                [(r.key, f"old {i}") for i, r in enumerate(reqs)],
            )
        adopted = ReplyCache(tmp_path / "legacy.sqlite", endpoint_of(cfg(old, tmp_path)))
        assert [adopted.get(r.key).text for r in reqs] == [f"old {i}" for i in range(5)]
        stranger = ReplyCache(tmp_path / "legacy.sqlite", endpoint_of(cfg(other, tmp_path)))
        assert [stranger.get(r.key) for r in reqs] == [None] * 5


def test_judges_cache_apart_from_the_teacher_by_default():
    from empathy_distill.config import JudgeEndpointConfig

    assert JudgeEndpointConfig(model="judge").cache_path != TeacherConfig().cache_path


def test_request_budget_stops_cleanly(tmp_path):
    with LoopbackServer() as server:
        teacher = OpenAITeacher(cfg(server, tmp_path, max_requests=7, concurrency=4))
        _, results = ask(teacher, 20)
        assert server.received == 7
    assert sum(r.ok for r in results) == 7
    assert {r.error for r in results if not r.ok} == {"budget: max_requests=7 reached"}
    assert teacher.budget.exhausted == "max_requests=7 reached"


def test_cost_budget_and_accounting(tmp_path):
    prices = PriceConfig(input_per_1k=1.0, output_per_1k=2.0)
    with LoopbackServer() as server:
        teacher = OpenAITeacher(cfg(server, tmp_path, max_cost_usd=0.05, concurrency=1, prices=prices))
        _, results = ask(teacher, 50)
    sent = [r for r in results if r.ok]
    assert 0 < len(sent) < 50
    expected = sum(r.prompt_tokens / 1000 * 1.0 + r.completion_tokens / 1000 * 2.0 for r in sent)
    assert teacher.usage.cost_usd == pytest.approx(expected)
    assert teacher.usage.cost_usd >= 0.05 and teacher.usage.cost_usd < 0.05 + max(
        r.prompt_tokens / 1000 + r.completion_tokens / 500 for r in sent
    )
    assert teacher.usage.by_stage["test"]["requests"] == len(sent)
    assert "max_cost_usd=0.05 reached" in teacher.budget.exhausted


def test_batch_mode_end_to_end_and_resume_by_id(tmp_path):
    with LoopbackServer(batch_polls_before_done=3) as server:
        # first run gives up waiting: the batch id stays in the cache database
        impatient = BatchTeacher(
            cfg(server, tmp_path, mode="batch", batch_poll_s=0.01, batch_timeout_s=0.001),
            ReplyCache(tmp_path / "b.sqlite"),
        )
        with pytest.raises(TeacherError, match="rerun to resume it"):
            ask(impatient, 12)
        assert len(server.batches) == 1
        # the rerun resumes the same batch instead of submitting another
        teacher = BatchTeacher(
            cfg(
                server,
                tmp_path,
                mode="batch",
                batch_poll_s=0.01,
                prices=PriceConfig(input_per_1k=1.0, output_per_1k=1.0),
            ),
            ReplyCache(tmp_path / "b.sqlite"),
        )
        _, results = ask(teacher, 12)
        assert len(server.batches) == 1
        assert all(r.ok and r.text for r in results)
        # a resumed batch counts each reply once: as a request, not also as a cache hit
        assert (teacher.usage.requests, teacher.usage.cache_hits) == (12, 0)
        assert teacher.usage.by_stage["test"]["requests"] == 12 and teacher.usage.by_stage["test"]["cache_hits"] == 0
        # batch prices are half
        tokens = sum(r.prompt_tokens + r.completion_tokens for r in results)
        assert teacher.usage.cost_usd == pytest.approx(tokens / 1000 * 0.5)
        # a third run is served from the cache
        again = BatchTeacher(cfg(server, tmp_path, mode="batch", batch_poll_s=0.01), ReplyCache(tmp_path / "b.sqlite"))
        _, third = ask(again, 12)
        assert len(server.batches) == 1 and all(r.cached for r in third)
        assert (again.usage.requests, again.usage.cache_hits) == (0, 12)


def test_batch_mode_submits_only_what_the_budget_covers(tmp_path):
    prices = PriceConfig(input_per_1k=2.5, output_per_1k=10.0)  # list prices; the batch pays half
    with LoopbackServer() as server:
        teacher = BatchTeacher(
            cfg(server, tmp_path, mode="batch", batch_poll_s=0.01, max_tokens=256, max_cost_usd=0.0001, prices=prices),
            ReplyCache(tmp_path / "b.sqlite"),
        )
        reqs, results = ask(teacher, 50)
        # one request's worst case (256 tokens out at $5 per 1M) is over $0.0001: nothing may be submitted
        assert teacher.budget.worst_case_cost(reqs[0]) > 0.0001
        assert server.received == 0 and not server.batches
        assert all(not r.ok and r.error.startswith("budget: max_cost_usd=0.0001 would be passed") for r in results)
        assert "max_cost_usd=0.0001" in teacher.budget.exhausted

        # a budget for about 10 worst cases submits 10 requests and reports the rest as a budget stop
        worst = teacher.budget.worst_case_cost(reqs[0])
        capped = BatchTeacher(
            cfg(
                server,
                tmp_path,
                mode="batch",
                batch_poll_s=0.01,
                max_tokens=256,
                max_cost_usd=worst * 10.5,
                prices=prices,
            ),
            ReplyCache(tmp_path / "c.sqlite"),
        )
        _, results = ask(capped, 50)
        assert server.received == 10 and len(server.batches) == 1
        assert sum(r.ok for r in results) == 10
        assert all(r.error.startswith("budget:") for r in results if not r.ok)
        assert capped.usage.cost_usd <= worst * 10.5 and capped.budget.reserved_usd == 0.0


def test_build_teacher_picks_the_backend(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    from empathy_distill.errors import ConfigError

    with pytest.raises(ConfigError, match="environment variable OPENAI_API_KEY is not set"):
        build_teacher(TeacherConfig(cache_path=str(tmp_path / "c.sqlite")))
    monkeypatch.setenv("MY_KEY", "sk-test")
    teacher = build_teacher(TeacherConfig(api_key_env="MY_KEY", mode="batch", cache_path=str(tmp_path / "c.sqlite")))
    assert isinstance(teacher, BatchTeacher)


def test_local_backend_batches_concurrent_requests_and_a_seed_fixes_a_sampled_reply(tmp_path):
    """``backend: local`` runs the serving engine in process: concurrent requests share its batch (as ``serve --base``
    would serve them), and a sampled reply depends on its seed only, not on what else was in the batch."""
    from tests.tiny_model import build_tiny_chat_model

    folder = build_tiny_chat_model(tmp_path / "tiny")

    def teacher(seed):
        return build_teacher(
            TeacherConfig(backend="local", model=str(folder), max_tokens=12, temperature=1.0, seed=seed, concurrency=8),
            use_cache=False,
        )

    _, together = ask(teacher(7), 6)
    _, alone = ask(teacher(7), 1, offset=3)
    _, other_seed = ask(teacher(8), 6)
    assert all(r.ok and r.completion_tokens > 0 for r in together)
    assert alone[0].text == together[3].text  # its seed, not its batch, chose the tokens
    assert [r.text for r in other_seed] != [r.text for r in together]


def test_local_backend_counts_the_batch_it_ran(tmp_path):
    from tests.tiny_model import build_tiny_chat_model

    folder = build_tiny_chat_model(tmp_path / "tiny")
    teacher = build_teacher(
        TeacherConfig(backend="local", model=str(folder), max_tokens=16, temperature=0.0, concurrency=8),
        use_cache=False,
    )
    reqs = [teacher.request([("user", f"message {i}")]) for i in range(8)]

    async def run():
        results = await teacher.complete_many(reqs)
        stats = teacher._pool.stats()["base"]
        await teacher.aclose()
        return results, stats

    results, stats = asyncio.run(run())
    assert all(r.ok for r in results) and stats["max_running"] > 1 and stats["finished"] == 8 + 1  # + the warm-up


def test_local_transformers_backend(tmp_path):
    from tests.tiny_model import build_tiny_chat_model

    folder = build_tiny_chat_model(tmp_path / "tiny")
    teacher = build_teacher(
        TeacherConfig(
            backend="local", model=str(folder), max_tokens=6, temperature=0.0, cache_path=str(tmp_path / "c.sqlite")
        )
    )
    reqs, results = ask(teacher, 2)
    assert all(r.ok and isinstance(r.text, str) and r.completion_tokens > 0 for r in results)
    _, again = ask(
        build_teacher(
            TeacherConfig(
                backend="local", model=str(folder), max_tokens=6, temperature=0.0, cache_path=str(tmp_path / "c.sqlite")
            )
        ),
        2,
    )
    assert all(r.cached for r in again)
