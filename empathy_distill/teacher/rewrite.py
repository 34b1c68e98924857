"""The teacher rewrites responses: strategy turns over the SFT and DPO groups of train dialogues.

For ``improve_human`` the teacher improves the human response; for ``improve_llm`` it
writes an initial response, then improves it. Train dialogues are shuffled (seeded)
and cut into disjoint SFT and DPO groups (950 and 800 on the real file, as in the
paper, scaled down proportionally on smaller data). The result is one log row per
dialogue (original, improved, status, reason, raw reply) and a report;
:mod:`empathy_distill.data.training_sets` turns the log into training rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pandas as pd

from empathy_distill.config import BootstrapConfig, TraceSettings
from empathy_distill.data.reports import BootstrapReport, TeacherUsage
from empathy_distill.data.training_sets import REWRITE_LOG_COLUMNS, contexts
from empathy_distill.prompts import INITIAL, SYSTEM, load_template, render, strategy_turns
from empathy_distill.teacher import endpoint_of
from empathy_distill.teacher.estimate import plan
from empathy_distill.teacher.openai_client import BUDGET_ERROR
from empathy_distill.teacher.parse import instruction_ngrams, parse_reply
from empathy_distill.tracing import trace_requests

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """Objects alive on entry (the dialogue table, imported libraries) are left out of the cyclic GC's
    collections until exit; objects made inside are collected as usual.

    Each request allocates short-lived containers; every time the collector's oldest generation ran it walked the
    whole heap too (in a pipeline process, ZenML, MLflow and torch's objects as well). On bench/scale.py's 2,000
    dialogues against the loopback, three runs each: the collector took 0.89 to 1.00 s per 1,000 dialogues and the
    stage 10.3 to 11.3 s; frozen, 0.37 to 0.45 s and 8.8 to 10.6 s. Nested uses leave the outer one in charge."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def split_roles(train_ids: list[str], cfg: BootstrapConfig) -> tuple[list[str], list[str]]:
    """Disjoint SFT and DPO dialogue ids, seeded; scaled down when there are fewer dialogues."""
    ids = sorted(set(train_ids))
    random.Random(cfg.seed).shuffle(ids)
    want = cfg.sft_dialogues + cfg.dpo_dialogues
    if want == 0:
        return [], []
    if len(ids) >= want:
        n_sft, n_dpo = cfg.sft_dialogues, cfg.dpo_dialogues
    else:
        n_sft = round(len(ids) * cfg.sft_dialogues / want)
        n_dpo = len(ids) - n_sft
        logger.warning(
            "only %d train dialogues for %d SFT + %d DPO: using %d + %d",
            len(ids),
            cfg.sft_dialogues,
            cfg.dpo_dialogues,
            n_sft,
            n_dpo,
        )
    return ids[:n_sft], ids[n_sft : n_sft + n_dpo]


def trace_stage(
    teacher, name: str, requests, results, outcomes: list[str], prompts: dict[str, str], start: int
) -> None:
    """The stage's MLflow trace (inside a tracked run): its counts, and a span per sampled request."""

    cfg = getattr(teacher, "cfg", None)  # a teacher without a config (a test's scripted one) traces with defaults
    trace_requests(
        f"teacher {name}",
        requests,
        results,
        outcomes,
        settings=cfg.tracing if cfg is not None else TraceSettings(),
        endpoint=endpoint_of(cfg) if cfg is not None else None,
        prompt=prompts.get(name),
        stage_start_ns=start,
    )


async def _improve(
    table: pd.DataFrame, roles: dict[str, str], cfg: BootstrapConfig, teacher, announce=None, prompts=None
) -> pd.DataFrame:
    """Runs the teacher stage by stage; returns one log row per selected dialogue. ``announce`` gets the
    :class:`~empathy_distill.teacher.estimate.Plan` once, before the first request is sent; ``prompts`` maps a
    template to its prompt-registry URI (shown on the stage's trace)."""
    ctx = contexts(table)
    system = load_template(SYSTEM)
    fields = {"target_words": cfg.target_words, "max_words": cfg.max_words}
    state = _initial_state(table, ctx, roles, cfg)

    turns = strategy_turns(cfg.strategy)
    planned = announce is None
    echo = {
        name: instruction_ngrams(load_template(name) + "\n" + system)
        for name in (*turns, *([INITIAL] if cfg.method == "improve_llm" else []))
    }

    async def stage(name: str, build) -> None:
        nonlocal planned
        todo = [s for s in state.values() if s["status"] == "pending"]
        requests = [teacher.request(build(s), tag=name) for s in todo]
        if not planned:  # the first turn's requests are known exactly: the plan, before any is sent
            planned = True
            announce(plan(requests, len(turns) + (cfg.method == "improve_llm"), cfg.target_words, teacher))
        start = time.time_ns()
        results = await teacher.complete_many(requests, desc=f"teacher {name}")
        outcomes = []
        for s, req, res in zip(todo, requests, results):
            outcomes.append(_record(s, name, req, res, cfg.max_words, echo[name]))
        trace_stage(teacher, name, requests, results, outcomes, prompts or {}, start)

    if cfg.method == "improve_llm":
        await stage(
            INITIAL,
            lambda s: [
                ("system", system),
                ("user", render(INITIAL, situation=s["situation"], utterance=s["utterance"], **fields)),
            ],
        )
        for s in state.values():
            if s["status"] == "pending":
                s.update(original=s["last"], original_source="teacher_initial")
    for i, turn in enumerate(turns):
        if i == 0:
            await stage(
                turn,
                lambda s, t=turn: [
                    ("system", system),
                    (
                        "user",
                        render(t, situation=s["situation"], utterance=s["utterance"], response=s["original"], **fields),
                    ),
                ],
            )
        else:
            await stage(
                turn, lambda s, t=turn: [*s["messages"], ("assistant", s["last"]), ("user", render(t, **fields))]
            )
    for s in state.values():
        if s["status"] == "pending":
            s.update(status="ok", improved=s["last"])
    return pd.DataFrame(
        [{c: s.get(c) for c in REWRITE_LOG_COLUMNS} for s in state.values()], columns=REWRITE_LOG_COLUMNS
    )


def _initial_state(
    table: pd.DataFrame, ctx: pd.DataFrame, roles: dict[str, str], cfg: BootstrapConfig
) -> dict[str, dict[str, Any]]:
    """One record per selected dialogue, pending; for ``improve_human`` the human reply it starts from (a dialogue
    without one is skipped, with the reason)."""
    state: dict[str, dict[str, Any]] = {}
    human = table[table["source"] == "human"].drop_duplicates("dialogue_id").set_index("dialogue_id")["response"]
    for dialogue_id, role in roles.items():
        row = ctx.loc[dialogue_id]
        state[dialogue_id] = {
            "dialogue_id": dialogue_id,
            "role": role,
            "situation": row["situation"],
            "utterance": row["utterance"],
            "status": "pending",
            "reason": None,
            "turns": 0,
        }
        if cfg.method == "improve_human":
            if dialogue_id in human.index:
                state[dialogue_id].update(original=human[dialogue_id], original_source="human")
            else:
                state[dialogue_id].update(status="skipped", reason="no_human_response")

    return state


def _record(s: dict[str, Any], name: str, request, result, max_words: int, echo) -> str:
    """One teacher reply into its dialogue's record (the reply parsed, or the error); returns the outcome for the
    stage's trace."""
    s["turns"] += 1
    s["messages"] = list(request.messages)
    if not result.ok:
        s.update(status="budget" if result.error.startswith(BUDGET_ERROR) else "error", reason=result.error, raw=None)
        return f"{s['status']}: {result.error}"
    parsed = parse_reply(result.text, max_words, expect_dimension=name.endswith("identify_lacking"), instructions=echo)
    s["raw"] = parsed.raw
    s["last"] = parsed.text
    s["dimension"] = parsed.dimension
    if not parsed.valid:
        s.update(status="invalid", reason=f"{name}:{parsed.reason}")
    return "parsed" if parsed.valid else f"invalid: {parsed.reason}"


def rewrite_with_teacher(
    table: pd.DataFrame, cfg: BootstrapConfig, teacher, announce=None, prompts: dict[str, str] | None = None
) -> tuple[pd.DataFrame, BootstrapReport]:
    """Runs the teacher over the SFT and DPO groups of train dialogues; ``announce`` (e.g. a step's console line)
    gets the run's :class:`~empathy_distill.teacher.estimate.Plan` before the first request; ``prompts`` (template ->
    prompt-registry URI) names each stage's prompt version on its trace.

    Returns:
        The per-dialogue log (original, improved, status, reason, raw reply) and
        a report with counts, teacher usage per stage and the budget state.
    """
    train_ids = table.loc[table["split"] == "train", "dialogue_id"].unique().tolist()
    sft_ids, dpo_ids = split_roles(train_ids, cfg)
    roles = {**{d: "sft" for d in sft_ids}, **{d: "dpo" for d in dpo_ids}}
    planned: list = []

    def on_plan(item) -> None:
        planned.append(item)
        logger.info(item.line())
        if announce is not None:
            announce(item)

    async def run() -> pd.DataFrame:
        try:
            return await _improve(table, roles, cfg, teacher, on_plan, prompts)
        finally:
            await teacher.aclose()

    with heap_frozen():
        log = asyncio.run(run())
    log = log.astype({c: "string" for c in REWRITE_LOG_COLUMNS if c != "turns"})
    statuses = Counter(log["status"])
    reasons = Counter(
        str(r).split(":")[0] if s == "invalid" else s for s, r in zip(log["status"], log["reason"]) if s != "ok"
    )
    usage = TeacherUsage(**teacher.usage.as_dict())
    report = BootstrapReport(
        method=cfg.method,
        strategy=cfg.strategy,
        train_dialogues=len(train_ids),
        sft_dialogues_planned=len(sft_ids),
        dpo_dialogues_planned=len(dpo_ids),
        dialogues_ok=statuses.get("ok", 0),
        dialogues_invalid=statuses.get("invalid", 0),
        dialogues_error=statuses.get("error", 0),
        dialogues_budget=statuses.get("budget", 0),
        dialogues_skipped=statuses.get("skipped", 0),
        not_ok_reasons=dict(reasons),
        first_error=next((str(r) for s, r in zip(log["status"], log["reason"]) if s == "error"), None),
        teacher_requests=usage.requests,
        teacher_cache_hits=usage.cache_hits,
        teacher_usage=usage,
        budget_exhausted=getattr(teacher.budget, "exhausted", None),
        teacher_plan=planned[0].as_dict() if planned else None,
    )
    if report.budget_exhausted:
        logger.warning(
            "teacher budget reached (%s): %d dialogues not bootstrapped; the sets hold the %d that were",
            report.budget_exhausted,
            statuses.get("budget", 0),
            statuses.get("ok", 0),
        )
    return log, report
