"""How far to trust a judge: its pairwise accuracy against human ratings, beside the length baseline."""

from __future__ import annotations

from typing import Any

import pandas as pd

from empathy_distill.judging.judges import PairJudge
from empathy_distill.judging.protocol import judge_both_orders
from empathy_distill.judging.scorer import rated_pairs
from empathy_distill.judging.stats import CI_METHOD, combine_orders, position_consistency, win_rate_ci


def calibrate_judge(table: pd.DataFrame, judge: PairJudge, max_pairs: int = 500, seed: int = 0) -> dict[str, Any]:
    """An LLM judge's pairwise accuracy against human ratings, beside the length baseline.

    Pairs are responses to the same dialogue whose ratings differ (up to ``max_pairs``,
    sampled with ``seed``); the higher-rated one is the candidate, judged in both
    orders, so accuracy = its win rate with the judge's own ties (its ``tie`` verdicts and
    inconsistent orders) counted half; invalid verdicts are excluded and counted. ``parse_rate``: verdicts the parser
    read, of all; ``position_bias``: of its A/B verdicts, the share that picked the reply shown first (each pair is
    shown both ways, so a judge reading content alone sits at 0.5).
    """

    rated = table[table["rating"].notna()].reset_index(drop=True)
    pairs = rated_pairs(rated)
    higher, lower = rated.iloc[pairs[:, 0]].reset_index(drop=True), rated.iloc[pairs[:, 1]].reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "dialogue_id": higher["dialogue_id"],
            "situation": higher["situation"],
            "utterance": higher["utterance"],
            "higher": higher["response"],
            "lower": lower["response"],
        }
    )
    if len(frame) > max_pairs:
        frame = frame.sample(n=max_pairs, random_state=seed).reset_index(drop=True)
    pairs = judge_both_orders(judge, frame, "higher", "lower")
    comp = win_rate_ci([combine_orders(a, b) for a, b in pairs]).as_dict()
    comp["position_consistency"] = position_consistency(pairs)
    verdicts = [v for pair in pairs for v in pair]
    parsed = [v for v in verdicts if v is not None]
    picks = [v for v in parsed if v in ("A", "B")]
    longer = [
        1.0 if len(h.split()) > len(lo.split()) else 0.5 if len(h.split()) == len(lo.split()) else 0.0
        for h, lo in zip(frame["higher"], frame["lower"])
    ]
    return {
        "judge": judge.name,
        "pairs": int(len(frame)),
        "judge_accuracy": round(comp["win_rate"], 4),
        "judge_tie_rate": round(comp["ties"] / (comp["n"] - comp["invalid"]), 4)
        if comp["n"] > comp["invalid"]
        else float("nan"),
        "ci": [round(comp["ci_low"], 4), round(comp["ci_high"], 4)],
        "ci_method": CI_METHOD,
        "invalid": comp["invalid"],
        "parse_rate": round(len(parsed) / len(verdicts), 4) if verdicts else float("nan"),
        "position_bias": round(picks.count("A") / len(picks), 4) if picks else float("nan"),
        "position_consistency": round(comp["position_consistency"], 4),
        "length_baseline_accuracy": round(sum(longer) / len(longer), 4) if longer else float("nan"),
        "length_tie_rate": round(longer.count(0.5) / len(longer), 4) if longer else float("nan"),
    }
