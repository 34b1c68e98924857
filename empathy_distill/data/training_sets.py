"""SFT rows and DPO pairs for the three distillation methods, from the dialogues and the teacher's rewrites.

``direct``: no teacher. SFT rows are recorded LLM responses rated 3 (by default);
DPO pairs put such a response (chosen) against the human response rated 1 or 2
(rejected).
``improve_human`` and ``improve_llm``: SFT row = (prompt, improved); DPO pair =
(prompt, chosen = improved, rejected = original), from the rewrite log that
:mod:`empathy_distill.teacher.rewrite` writes. Test dialogues never reach a
training set. Rows are flat (``system``, ``user``, ``response`` or
``chosen``/``rejected``); :func:`to_conversational` makes TRL's format.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from empathy_distill.config import BootstrapConfig
from empathy_distill.prompts import STUDENT_SYSTEM, load_template

SFT_COLUMNS = ["dialogue_id", "system", "user", "response", "source", "method", "strategy"]
DPO_COLUMNS = [
    "dialogue_id",
    "system",
    "user",
    "chosen",
    "rejected",
    "chosen_source",
    "rejected_source",
    "method",
    "strategy",
]
REWRITE_LOG_COLUMNS = [
    "dialogue_id",
    "role",
    "original",
    "original_source",
    "improved",
    "status",
    "reason",
    "dimension",
    "raw",
    "turns",
]


def user_turn(situation: str, utterance: str) -> str:
    """The student's user message: the situation and what the speaker said (once if equal)."""
    situation, utterance = situation.strip(), utterance.strip()
    return utterance if situation == utterance else f"{situation}\n\n{utterance}"


def contexts(table: pd.DataFrame) -> pd.DataFrame:
    """One row per dialogue (index ``dialogue_id``): situation, utterance, split."""
    return table.groupby("dialogue_id", sort=True).agg(
        situation=("situation", "first"), utterance=("utterance", "first"), split=("split", "first")
    )


def _rows(table: pd.DataFrame, columns: list[str], **values) -> pd.DataFrame:
    """One training row per row of ``table`` (which has ``situation`` and ``utterance``): the student's prompt, then
    ``values``."""
    prompt = {
        "dialogue_id": table["dialogue_id"],
        "system": load_template(STUDENT_SYSTEM),
        "user": [user_turn(s, u) for s, u in zip(table["situation"], table["utterance"])],
    }
    return pd.DataFrame({**prompt, **values}, columns=columns).reset_index(drop=True).astype("string")


def build_direct(table: pd.DataFrame, cfg: BootstrapConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The direct method: recorded responses filtered by their human ratings."""
    train = table[table["split"] == "train"]
    good = train[(train["source"] != "human") & (train["rating"] >= cfg.direct_min_rating)].fillna({"rating": 0})
    human = train[(train["source"] == "human") & (train["rating"] < cfg.direct_min_rating)]
    pairs = good.merge(human[["dialogue_id", "response", "source"]], on="dialogue_id", suffixes=("", "_human"))
    pairs = pairs[pairs["response"] != pairs["response_human"]]
    sft = _rows(good, SFT_COLUMNS, response=good["response"], source=good["source"], method="direct", strategy="none")
    dpo = _rows(
        pairs,
        DPO_COLUMNS,
        chosen=pairs["response"],
        rejected=pairs["response_human"],
        chosen_source=pairs["source"],
        rejected_source="human",
        method="direct",
        strategy="none",
    )
    return sft, dpo


def sets_from_log(table: pd.DataFrame, log: pd.DataFrame, cfg: BootstrapConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SFT rows (improved) and DPO pairs (improved vs original) from the teacher's rewrite log."""
    ok = log[log["status"] == "ok"].join(contexts(table)[["situation", "utterance"]], on="dialogue_id")
    sft_log, dpo_log = ok[ok["role"] == "sft"], ok[ok["role"] == "dpo"]
    sft = _rows(
        sft_log, SFT_COLUMNS, response=sft_log["improved"], source="teacher", method=cfg.method, strategy=cfg.strategy
    )
    dpo = _rows(
        dpo_log,
        DPO_COLUMNS,
        chosen=dpo_log["improved"],
        rejected=dpo_log["original"],
        chosen_source="teacher",
        rejected_source=dpo_log["original_source"],
        method=cfg.method,
        strategy=cfg.strategy,
    )
    return sft, dpo


def sets_for_method(table: pd.DataFrame, log: pd.DataFrame, cfg: BootstrapConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SFT rows and DPO pairs for ``cfg.method``: ``direct`` filters recorded responses by rating, the
    improvement methods use the teacher's rewrites in ``log``."""
    if cfg.method == "direct":
        return build_direct(table, cfg)
    return sets_from_log(table, log, cfg)


def to_conversational(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """TRL's conversational rows: ``prompt`` + ``completion`` (SFT) or ``chosen``/``rejected`` (DPO)."""
    rows = []
    for rec in frame.to_dict(orient="records"):
        prompt = [{"role": "system", "content": rec["system"]}, {"role": "user", "content": rec["user"]}]
        if "response" in rec:
            rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": rec["response"]}]})
        else:
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": rec["chosen"]}],
                    "rejected": [{"role": "assistant", "content": rec["rejected"]}],
                }
            )
    return rows
