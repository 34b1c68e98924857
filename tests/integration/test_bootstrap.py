"""Training sets from the three methods, on the loopback teacher: sizes, disjointness,
no test leakage, budget stops, and a kill -9 mid-run followed by a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from empathy_distill.config import BootstrapConfig, DataConfig, TeacherConfig, ValidationConfig
from empathy_distill.data.ingest import ingest
from empathy_distill.data.training_sets import to_conversational
from empathy_distill.stages import bootstrap_training_sets
from empathy_distill.teacher import build_teacher
from empathy_distill.testing.loopback import LoopbackServer
from tests.conftest import REPO, SAMPLE_DATA


@pytest.fixture(scope="module")
def sample_table():
    return ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table


def teacher_cfg(server, tmp_path, **kw):
    return TeacherConfig(
        base_url=server.base_url, model="loop", cache_path=str(tmp_path / "t.sqlite"), backoff_base_s=0.01, **kw
    )


def test_direct_counts_follow_the_rating_filter(sample_table):
    sets = bootstrap_training_sets(sample_table, BootstrapConfig(method="direct"))
    train = sample_table[sample_table.split == "train"]
    llm3 = train[(train.source != "human") & (train.rating == 3)]
    human_low = train[(train.source == "human") & (train.rating < 3)]
    assert len(sets.sft) == len(llm3) == sets.sft_rows
    expected_pairs = sum(len(llm3[llm3.dialogue_id == d]) for d in human_low.dialogue_id)
    assert len(sets.dpo) == expected_pairs == sets.dpo_pairs
    assert set(sets.dpo.rejected_source) == {"human"}
    assert sets.test_leakage == 0
    assert not set(sets.sft.dialogue_id) & set(sample_table[sample_table.split == "test"].dialogue_id)


@pytest.mark.parametrize(
    "method,strategy",
    [("improve_llm", "all_three"), ("improve_human", "sequential"), ("improve_llm", "identify_lacking")],
)
def test_improvement_methods_on_the_sample(sample_table, tmp_path, method, strategy):
    with LoopbackServer() as server:
        sets = bootstrap_training_sets(
            sample_table,
            BootstrapConfig(method=method, strategy=strategy),
            build_teacher(teacher_cfg(server, tmp_path)),
        )
        turns = 3 if strategy == "sequential" else 1
        assert server.received == 45 * (turns + (method == "improve_llm"))
    assert (len(sets.sft), len(sets.dpo)) == (24, 21)  # 950:800 scaled to 45 train dialogues
    assert not set(sets.sft.dialogue_id) & set(sets.dpo.dialogue_id)
    assert (sets.dpo.chosen != sets.dpo.rejected).all()
    assert set(sets.dpo.rejected_source) == {"teacher_initial" if method == "improve_llm" else "human"}
    rows = to_conversational(sets.dpo)
    assert [m["role"] for m in rows[0]["prompt"]] == ["system", "user"] and rows[0]["chosen"][0]["role"] == "assistant"
    if strategy == "sequential":
        assert sets.log["turns"].max() == 3
        import sqlite3

        chats = [
            json.loads(r[0]) for r in sqlite3.connect(tmp_path / "t.sqlite").execute("SELECT request FROM replies")
        ]
        roles = sorted({tuple(m[0] for m in chat) for chat in chats}, key=len)
        assert roles[-1] == (
            "system",
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
        )  # the third round sees both earlier answers
        assert "Round three, compassionate" in max(chats, key=len)[-1][1]


def test_empty_and_failed_replies_become_reasons_not_rows(sample_table, tmp_path):
    with LoopbackServer(faults=["empty"] * 3, fault_rates={}) as server:
        sets = bootstrap_training_sets(
            sample_table,
            BootstrapConfig(method="improve_human", strategy="naive"),
            build_teacher(teacher_cfg(server, tmp_path)),
        )
    assert sets.report.dialogues_invalid == 3
    assert sets.report.not_ok_reasons == {"naive": 3}
    assert len(sets.sft) + len(sets.dpo) == 42  # 45 train dialogues, 3 empty replies


def test_budget_stop_gives_a_consistent_partial_result(sample_table, tmp_path):
    with LoopbackServer() as server:
        teacher = build_teacher(teacher_cfg(server, tmp_path, max_requests=60))
        sets = bootstrap_training_sets(
            sample_table, BootstrapConfig(method="improve_llm", strategy="all_three"), teacher
        )
        assert server.received == 60
    report = sets.report
    assert report.budget_exhausted == "max_requests=60 reached"
    assert report.dialogues_ok == 15  # 45 initial requests, then 15 improvements
    assert report.dialogues_budget == 30
    assert len(sets.sft) + len(sets.dpo) == report.dialogues_ok


@pytest.mark.real_data
def test_real_file_improve_llm_all_three(real_data, tmp_path):
    table = ingest(real_data, DataConfig(path=str(real_data)), ValidationConfig()).table
    with LoopbackServer() as server:
        sets = bootstrap_training_sets(
            table,
            BootstrapConfig(method="improve_llm", strategy="all_three"),
            build_teacher(teacher_cfg(server, tmp_path)),
        )
        assert server.received == 3500
    assert (len(sets.sft), len(sets.dpo)) == (950, 800)
    assert sets.test_leakage == 0
    test_ids = set(table[table.split == "test"].dialogue_id)
    assert not (set(sets.sft.dialogue_id) | set(sets.dpo.dialogue_id)) & test_ids
    assert not set(sets.sft.dialogue_id) & set(sets.dpo.dialogue_id)


def test_kill_minus_nine_then_resume_sends_nothing_twice(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OPENAI_API_KEY", None)
    concurrency = 4
    with LoopbackServer(latency_mean_s=0.05, seed=1) as server:
        args = [
            sys.executable,
            "-m",
            "app.cli",
            "bootstrap",
            "--config",
            str(REPO / "configs" / "paper.yaml"),
            "--out",
            str(out),
            "--set",
            f"data.path={SAMPLE_DATA}",
            "--set",
            "data.split.method=auto",
            "--set",
            f"teacher.base_url={server.base_url}",
            "--set",
            f"teacher.cache_path={tmp_path / 'cache.sqlite'}",
            "--set",
            f"teacher.concurrency={concurrency}",
        ]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while sum(server.completed.values()) < 30 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert not (out / "report.json").exists()
        completed_before = sum(server.completed.values())
        assert 30 <= completed_before < 90

        rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
    sent_twice = [k for k, n in server.completed.items() if n > 1]
    assert len(server.completed) == 90  # 45 initial + 45 improvements, each completed
    assert len(sent_twice) <= concurrency  # at most the requests in flight at the kill
    report = json.loads((out / "report.json").read_text())
    assert report["teacher_cache_hits"] >= completed_before - concurrency
    sft, dpo = pd.read_parquet(out / "sft.parquet"), pd.read_parquet(out / "dpo.parquet")
    assert (len(sft), len(dpo)) == (24, 21)
    assert sft.dialogue_id.is_unique and dpo.dialogue_id.is_unique


@pytest.mark.parametrize("method,strategy", [("improve_llm", "all_three"), ("improve_human", "sequential")])
def test_the_plan_is_said_before_the_first_request_and_counts_what_is_sent(sample_table, tmp_path, method, strategy):
    from empathy_distill.stages import rewrite_stage

    cfg = BootstrapConfig(method=method, strategy=strategy)
    with LoopbackServer() as server:
        plans, received_then = [], []

        def announce(plan):
            plans.append(plan)
            received_then.append(server.received)

        prices = {"input_per_1k": 0.0025, "output_per_1k": 0.01}

        def teacher():
            return build_teacher(teacher_cfg(server, tmp_path, prices=prices))

        _, report = rewrite_stage(sample_table, cfg, teacher(), announce)
        first_sent = server.received
        _, again = rewrite_stage(sample_table, cfg, teacher(), announce)
        assert server.received == first_sent  # the rerun answers from the reply cache
    first, rerun = plans
    assert received_then == [0, first_sent]  # each plan came before that run's first request
    assert first.requests == report.teacher_requests == first_sent == 45 * (3 if strategy == "sequential" else 2)
    assert (first.dialogues, first.turns, first.first_turn_cached) == (45, first_sent // 45, 0)
    assert 0 < first.cost_usd < first.worst_cost_usd and first.prompt_tokens > first.completion_tokens > 0
    line = first.line()
    assert f"teacher plan: {first_sent} requests for 45 dialogues" in line and "caps: no request cap, no cost" in line
    assert rerun.first_turn_cached == 45 and "expect 0 sent" in rerun.line()
    # the dollars price every request: the rerun's line says so instead of promising them
    assert "with nothing cached" in rerun.line() and "with nothing cached" not in line
    assert (again.teacher_requests, again.teacher_cache_hits) == (0, first_sent)
    assert report.teacher_plan["requests"] == first_sent


def test_the_plan_names_the_cap_that_will_stop_the_run(sample_table, tmp_path):
    from empathy_distill.stages import rewrite_stage

    cfg = TeacherConfig(base_url="http://127.0.0.1:9/v1", model="m", cache_path=str(tmp_path / "c"), max_requests=60)
    teacher = build_teacher(cfg)
    plans = []

    class Stop(Exception):
        pass

    def announce(plan):
        plans.append(plan)
        raise Stop  # nothing is sent: the plan alone is under test

    with pytest.raises(Stop):
        rewrite_stage(sample_table, BootstrapConfig(method="improve_llm", strategy="all_three"), teacher, announce)
    line = plans[0].line()
    assert plans[0].requests == 90 and "caps: 60 requests, no cost cap (the request cap stops it after 60)" in line
    assert "no prices set (teacher.prices)" in line  # never a made-up $0.00


def test_the_teacher_stage_runs_with_the_heap_before_it_frozen_and_unfreezes_after(sample_table, tmp_path):
    """The objects alive before the stage (table, libraries) are out of the cyclic GC's walks while requests run
    (bench/scale.py: the collector's time per 1,000 dialogues roughly halved); none stay frozen after."""
    import gc

    from empathy_distill.teacher.rewrite import heap_frozen

    seen = []
    with LoopbackServer() as server:
        teacher = build_teacher(teacher_cfg(server, tmp_path))
        sent = teacher.complete_many

        async def recording(requests, desc="teacher"):
            seen.append(gc.get_freeze_count())
            return await sent(requests, desc)

        teacher.complete_many = recording
        assert gc.get_freeze_count() == 0
        bootstrap_training_sets(sample_table, BootstrapConfig(method="improve_llm", strategy="all_three"), teacher)
    assert seen and min(seen) > len(sample_table)
    assert gc.get_freeze_count() == 0
    gc.freeze()  # an outer freeze (e.g. a server that froze its heap at start) is left as it was
    try:
        before = gc.get_freeze_count()
        with heap_frozen():
            pass
        # Not `== before`: a frozen object that another thread frees in between leaves the count (CI once saw 3
        # fewer). Freezing again would add the objects made since (the context manager's own generator at least);
        # unfreezing would leave 0.
        assert 0 < gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()
