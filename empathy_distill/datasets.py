"""SFT rows and DPO pairs from the three distillation methods.

``direct``: no teacher. SFT rows are recorded LLM responses rated 3 (by default);
DPO pairs put such a response (chosen) against the human response rated 1 or 2
(rejected).
``improve_human``: the teacher improves the human response.
``improve_llm``: the teacher writes an initial response, then improves it.

For the improvement methods, train dialogues are shuffled (seeded) and cut into
disjoint SFT and DPO groups (950 and 800 on the real file, as in the paper,
scaled down proportionally on smaller data). SFT row = (prompt, improved);
DPO pair = (prompt, chosen = improved, rejected = original). Test dialogues never
reach a training set. Rows are flat (``system``, ``user``, ``response`` or
``chosen``/``rejected``); :func:`to_conversational` makes TRL's format.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from empathy_distill.config import BootstrapConfig
from empathy_distill.prompts import INITIAL, STUDENT_SYSTEM, SYSTEM, load_template, prompt_hash, render, strategy_turns, templates_for
from empathy_distill.teacher.openai_client import BUDGET_ERROR
from empathy_distill.teacher.parse import parse_reply

logger = logging.getLogger(__name__)

SFT_COLUMNS = ["dialogue_id", "system", "user", "response", "source", "method", "strategy"]
DPO_COLUMNS = ["dialogue_id", "system", "user", "chosen", "rejected", "chosen_source", "rejected_source", "method", "strategy"]
BOOTSTRAP_COLUMNS = ["dialogue_id", "role", "original", "original_source", "improved", "status", "reason", "dimension", "raw", "turns"]


@dataclass
class TrainingSets:
    """SFT rows, DPO pairs, the per-dialogue bootstrap log and a report."""

    sft: pd.DataFrame
    dpo: pd.DataFrame
    log: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BOOTSTRAP_COLUMNS))
    report: dict[str, Any] = field(default_factory=dict)


def user_turn(situation: str, utterance: str) -> str:
    """The student's user message: the situation and what the speaker said (once if equal)."""
    situation, utterance = situation.strip(), utterance.strip()
    return utterance if situation == utterance else f"{situation}\n\n{utterance}"


def lineage_prompt_hash(cfg: BootstrapConfig) -> str:
    """Hash of every template the configured method uses (student prompt included)."""
    if cfg.method == "direct":
        return prompt_hash([STUDENT_SYSTEM])
    return prompt_hash([*templates_for(cfg.strategy, with_initial=cfg.method == "improve_llm"), STUDENT_SYSTEM])


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
        logger.warning("only %d train dialogues for %d SFT + %d DPO: using %d + %d", len(ids), cfg.sft_dialogues, cfg.dpo_dialogues, n_sft, n_dpo)
    return ids[:n_sft], ids[n_sft : n_sft + n_dpo]


def _contexts(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("dialogue_id", sort=True).agg(situation=("situation", "first"), utterance=("utterance", "first"), split=("split", "first"))


def build_direct(table: pd.DataFrame, cfg: BootstrapConfig) -> TrainingSets:
    """The direct method: recorded responses filtered by their human ratings."""
    train = table[table["split"] == "train"]
    system = load_template(STUDENT_SYSTEM)
    good = train[(train["source"] != "human") & (train["rating"] >= cfg.direct_min_rating)].fillna({"rating": 0})
    sft = pd.DataFrame(
        {
            "dialogue_id": good["dialogue_id"],
            "system": system,
            "user": [user_turn(s, u) for s, u in zip(good["situation"], good["utterance"])],
            "response": good["response"],
            "source": good["source"],
            "method": "direct",
            "strategy": "none",
        },
        columns=SFT_COLUMNS,
    )
    human = train[(train["source"] == "human") & (train["rating"] < cfg.direct_min_rating)]
    pairs = good.merge(human[["dialogue_id", "response", "source"]], on="dialogue_id", suffixes=("", "_human"))
    pairs = pairs[pairs["response"] != pairs["response_human"]]
    dpo = pd.DataFrame(
        {
            "dialogue_id": pairs["dialogue_id"],
            "system": system,
            "user": [user_turn(s, u) for s, u in zip(pairs["situation"], pairs["utterance"])],
            "chosen": pairs["response"],
            "rejected": pairs["response_human"],
            "chosen_source": pairs["source"],
            "rejected_source": "human",
            "method": "direct",
            "strategy": "none",
        },
        columns=DPO_COLUMNS,
    )
    sft, dpo = sft.reset_index(drop=True).astype("string"), dpo.reset_index(drop=True).astype("string")
    report = {
        "method": "direct",
        "strategy": "none",
        "train_dialogues": int(train["dialogue_id"].nunique()),
        "sft_rows": len(sft),
        "dpo_pairs": len(dpo),
        "sft_dialogues": int(sft["dialogue_id"].nunique()),
        "dpo_dialogues": int(dpo["dialogue_id"].nunique()),
        "teacher_requests": 0,
    }
    return TrainingSets(sft=sft, dpo=dpo, report=report)


async def _improve(table: pd.DataFrame, roles: dict[str, str], cfg: BootstrapConfig, teacher) -> pd.DataFrame:
    """Runs the teacher stage by stage; returns one log row per selected dialogue."""
    ctx = _contexts(table)
    system = load_template(SYSTEM)
    fields = {"target_words": cfg.target_words, "max_words": cfg.max_words}
    state: dict[str, dict[str, Any]] = {}
    human = table[table["source"] == "human"].drop_duplicates("dialogue_id").set_index("dialogue_id")["response"]
    for dialogue_id, role in roles.items():
        row = ctx.loc[dialogue_id]
        state[dialogue_id] = {"dialogue_id": dialogue_id, "role": role, "situation": row["situation"], "utterance": row["utterance"], "status": "pending", "reason": None, "turns": 0}
        if cfg.method == "improve_human":
            if dialogue_id in human.index:
                state[dialogue_id].update(original=human[dialogue_id], original_source="human")
            else:
                state[dialogue_id].update(status="skipped", reason="no_human_response")

    async def stage(name: str, build) -> None:
        todo = [s for s in state.values() if s["status"] == "pending"]
        requests = [teacher.request(build(s), tag=name) for s in todo]
        results = await teacher.complete_many(requests, desc=f"teacher {name}")
        for s, req, res in zip(todo, requests, results):
            s["turns"] += 1
            s["messages"] = list(req.messages)
            if not res.ok:
                s.update(status="budget" if res.error.startswith(BUDGET_ERROR) else "error", reason=res.error, raw=None)
                continue
            parsed = parse_reply(res.text, cfg.max_words, expect_dimension=name.endswith("identify_lacking"))
            s["raw"] = parsed.raw
            s["last"] = parsed.text
            s["dimension"] = parsed.dimension
            if not parsed.valid:
                s.update(status="invalid", reason=f"{name}:{parsed.reason}")

    if cfg.method == "improve_llm":
        await stage(INITIAL, lambda s: [("system", system), ("user", render(INITIAL, situation=s["situation"], utterance=s["utterance"], **fields))])
        for s in state.values():
            if s["status"] == "pending":
                s.update(original=s["last"], original_source="teacher_initial")
    turns = strategy_turns(cfg.strategy)
    for i, turn in enumerate(turns):
        if i == 0:
            await stage(turn, lambda s, t=turn: [("system", system), ("user", render(t, situation=s["situation"], utterance=s["utterance"], response=s["original"], **fields))])
        else:
            await stage(turn, lambda s, t=turn: [*s["messages"], ("assistant", s["last"]), ("user", render(t, **fields))])
    for s in state.values():
        if s["status"] == "pending":
            s.update(status="ok", improved=s["last"])
    return pd.DataFrame([{c: s.get(c) for c in BOOTSTRAP_COLUMNS} for s in state.values()], columns=BOOTSTRAP_COLUMNS)


def run_bootstrap(table: pd.DataFrame, cfg: BootstrapConfig, teacher) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Runs the teacher over the SFT and DPO groups of train dialogues.

    Returns:
        The per-dialogue log (original, improved, status, reason, raw reply) and
        a report with counts, teacher usage per stage and the budget state.
    """
    train_ids = table.loc[table["split"] == "train", "dialogue_id"].unique().tolist()
    sft_ids, dpo_ids = split_roles(train_ids, cfg)
    roles = {**{d: "sft" for d in sft_ids}, **{d: "dpo" for d in dpo_ids}}

    async def run() -> pd.DataFrame:
        try:
            return await _improve(table, roles, cfg, teacher)
        finally:
            await teacher.aclose()

    log = asyncio.run(run()).astype({c: "string" for c in BOOTSTRAP_COLUMNS if c != "turns"})
    statuses = Counter(log["status"])
    reasons = Counter(str(r).split(":")[0] if s == "invalid" else s for s, r in zip(log["status"], log["reason"]) if s != "ok")
    usage = teacher.usage.as_dict()
    report = {
        "method": cfg.method,
        "strategy": cfg.strategy,
        "train_dialogues": len(train_ids),
        "sft_dialogues_planned": len(sft_ids),
        "dpo_dialogues_planned": len(dpo_ids),
        "dialogues_ok": statuses.get("ok", 0),
        "dialogues_invalid": statuses.get("invalid", 0),
        "dialogues_error": statuses.get("error", 0),
        "dialogues_budget": statuses.get("budget", 0),
        "dialogues_skipped": statuses.get("skipped", 0),
        "not_ok_reasons": dict(reasons),
        "first_error": next((str(r) for s, r in zip(log["status"], log["reason"]) if s == "error"), None),
        "teacher_requests": usage["requests"],
        "teacher_cache_hits": usage["cache_hits"],
        "teacher_usage": usage,
        "budget_exhausted": getattr(teacher.budget, "exhausted", None),
    }
    if report["budget_exhausted"]:
        logger.warning(
            "teacher budget reached (%s): %d dialogues not bootstrapped; the sets hold the %d that were",
            report["budget_exhausted"], statuses.get("budget", 0), statuses.get("ok", 0),
        )
    return log, report


def sets_from_log(table: pd.DataFrame, log: pd.DataFrame, cfg: BootstrapConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SFT rows (improved) and DPO pairs (improved vs original) from the bootstrap log."""
    ctx = _contexts(table)
    system = load_template(STUDENT_SYSTEM)
    ok = log[log["status"] == "ok"]
    users = {d: user_turn(ctx.loc[d, "situation"], ctx.loc[d, "utterance"]) for d in ok["dialogue_id"]}
    sft_log, dpo_log = ok[ok["role"] == "sft"], ok[ok["role"] == "dpo"]
    sft = pd.DataFrame(
        {"dialogue_id": sft_log["dialogue_id"], "system": system, "user": sft_log["dialogue_id"].map(users), "response": sft_log["improved"],
         "source": "teacher", "method": cfg.method, "strategy": cfg.strategy},
        columns=SFT_COLUMNS,
    )
    dpo = pd.DataFrame(
        {"dialogue_id": dpo_log["dialogue_id"], "system": system, "user": dpo_log["dialogue_id"].map(users), "chosen": dpo_log["improved"],
         "rejected": dpo_log["original"], "chosen_source": "teacher", "rejected_source": dpo_log["original_source"], "method": cfg.method,
         "strategy": cfg.strategy},
        columns=DPO_COLUMNS,
    )
    return sft.reset_index(drop=True).astype("string"), dpo.reset_index(drop=True).astype("string")


def build_training_sets(table: pd.DataFrame, cfg: BootstrapConfig, teacher=None) -> TrainingSets:
    """SFT rows and DPO pairs for ``cfg.method``; the teacher is needed for the improvement methods."""
    if cfg.method == "direct":
        sets = build_direct(table, cfg)
    else:
        if teacher is None:
            raise ValueError(f"method {cfg.method} needs a teacher")
        log, report = run_bootstrap(table, cfg, teacher)
        sft, dpo = sets_from_log(table, log, cfg)
        sets = TrainingSets(sft=sft, dpo=dpo, log=log, report={**report, "sft_rows": len(sft), "dpo_pairs": len(dpo)})
    sets.report["prompt_hash"] = lineage_prompt_hash(cfg)
    test_ids = set(table.loc[table["split"] == "test", "dialogue_id"])
    leaked = (set(sets.sft["dialogue_id"]) | set(sets.dpo["dialogue_id"])) & test_ids
    sets.report["test_leakage"] = len(leaked)
    return sets


def to_conversational(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """TRL's conversational rows: ``prompt`` + ``completion`` (SFT) or ``chosen``/``rejected`` (DPO)."""
    rows = []
    for rec in frame.to_dict(orient="records"):
        prompt = [{"role": "system", "content": rec["system"]}, {"role": "user", "content": rec["user"]}]
        if "response" in rec:
            rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": rec["response"]}]})
        else:
            rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": rec["chosen"]}], "rejected": [{"role": "assistant", "content": rec["rejected"]}]})
    return rows
