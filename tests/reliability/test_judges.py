"""Judges that answer badly: unparsable, refusing and empty replies are invalid comparisons, never losses;
an evaluation with more invalid comparisons than the threshold allows never promotes, however it scores."""

from __future__ import annotations

import re

import pandas as pd

from empathy_distill.config import GateRule, PromotionPolicy, TeacherConfig
from empathy_distill.judging.judges import LLMJudge
from empathy_distill.judging.protocol import evaluate
from empathy_distill.registry.policy import gate
from empathy_distill.teacher import build_teacher
from empathy_distill.testing.loopback import LoopbackServer

N = 60


def candidates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dialogue_id": [f"d{i}" for i in range(N)],
            "situation": [f"Situation {i}" for i in range(N)],
            "utterance": [f"Utterance {i}" for i in range(N)],
            "tuned_response": [f"That sounds hard, KIND reply {i}." for i in range(N)],
            "base_response": [f"ok {i}" for i in range(N)],
        }
    ).astype("string")


def unreliable(messages) -> str:
    """Prefers the KIND reply, except on every fifth dialogue, where it rambles, refuses or says nothing."""
    text = messages[-1]["content"]
    number = int(re.search(r"Situation (\d+)", text).group(1))
    if number % 5 == 0:
        return ["I would rather not compare these two replies.", "Verdict: maybe", ""][number // 5 % 3]
    a = re.search(r'Response A: "(.*)"', text).group(1)
    return "Verdict: A" if "KIND" in a else "Verdict: B"


def test_bad_verdicts_are_invalid_not_losses_and_too_many_never_promote(tmp_path):
    with LoopbackServer(preferences=unreliable) as server:
        judge = LLMJudge(
            build_teacher(TeacherConfig(base_url=server.base_url, model="judge", cache_path=str(tmp_path / "j.sqlite")))
        )
        report = evaluate(candidates(), [judge], {"base": "base_response"}, max_invalid_fraction=0.1)
    comparison = report.comparisons[0]
    # 12 of 60 dialogues got no usable verdict: invalid; the other 48 are all wins, none turned into a loss
    assert (comparison.invalid, comparison.wins, comparison.losses, comparison.ties) == (12, 48, 0, 0)
    assert comparison.win_rate == 1.0 and comparison.ci_low > 0.9
    assert not report.valid and report.invalid_reasons == ["base/llm: 12 of 60 comparisons invalid (20% > 10%)"]
    policy = PromotionPolicy(
        rules=[GateRule(opponent="base", bound="ci_low", op=">", threshold=0.5)], min_valid_comparisons=10
    )
    decision = gate(report, policy, champion_version=None)
    assert not decision.passed and decision.reasons[0].startswith("evaluation not valid: base/llm: 12 of 60")
    # the same verdicts (from the judge's reply cache) under a threshold they clear: the gate passes, so the
    # refusal above was the invalid share and nothing else
    lenient = evaluate(candidates(), [judge], {"base": "base_response"}, max_invalid_fraction=0.25)
    assert gate(lenient, policy, champion_version=None).passed
