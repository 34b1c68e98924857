"""The promotion gate: Wilson bounds against the policy, validity, completeness, the champion it was judged against."""

from __future__ import annotations

import pytest

from empathy_distill.config import PromotionPolicy
from empathy_distill.judging.results import Admission, Comparison, EvaluationReport
from empathy_distill.judging.stats import win_rate_ci
from empathy_distill.registry.policy import gate


def comparison(opponent: str, wins: int, ties: int, losses: int, invalid: int = 0, judge: str = "scorer") -> Comparison:
    """A comparison entry as evaluate() writes it, from outcome counts (the real interval code)."""
    outcomes = [1.0] * wins + [0.5] * ties + [0.0] * losses + [None] * invalid
    return Comparison.of(opponent, judge, win_rate_ci(outcomes))


def report(*comparisons: Comparison, valid: bool = True, champion: str | None = None) -> EvaluationReport:
    return EvaluationReport(
        candidate="tuned_response",
        valid=valid,
        invalid_reasons=[] if valid else ["base/scorer: 9 of 40 comparisons invalid (22% > 10%)"],
        comparisons=list(comparisons),
        champion_version=champion,
    )


POLICY = PromotionPolicy(min_valid_comparisons=30)


def test_a_clear_winner_passes_and_the_figures_are_recorded():
    r = report(comparison("base", 30, 4, 6), comparison("champion", 22, 8, 10), champion="3")
    result = gate(r, POLICY, champion_version="3")
    assert result.passed, result.reasons
    base = next(c for c in result.checks if c.rule.startswith("vs base"))
    assert base.value > 0.5 and base.value == r.comparisons[0].ci_low
    assert {c.rule for c in result.checks} == {"vs base: ci_low > 0.5", "vs champion: ci_low >= 0.45"}


def test_a_point_estimate_above_half_is_not_enough():
    # 24 wins of 40 is a 0.6 win rate, but its lower bound is below 0.5
    r = report(comparison("base", 24, 0, 16))
    result = gate(r, POLICY, champion_version=None)
    assert r.comparisons[0].win_rate == 0.6 and r.comparisons[0].ci_low < 0.5
    assert not result.passed
    assert result.reasons == [f"vs base: ci_low > 0.5 not met by judge scorer: ci_low = {r.comparisons[0].ci_low:.3f}"]


def test_a_loser_fails_on_the_champion_rule():
    r = report(comparison("base", 35, 0, 5), comparison("champion", 10, 5, 25), champion="2")
    result = gate(r, POLICY, champion_version="2")
    assert not result.passed
    assert len(result.reasons) == 1 and result.reasons[0].startswith("vs champion: ci_low >= 0.45 not met")


def test_an_invalid_evaluation_never_passes_even_with_winning_figures():
    r = report(comparison("base", 38, 0, 2), valid=False)
    result = gate(r, POLICY, champion_version=None)
    assert not result.passed
    assert result.reasons[0].startswith("evaluation not valid: base/scorer: 9 of 40")


def test_too_few_valid_comparisons_never_pass():
    r = report(comparison("base", 12, 0, 0, invalid=1))  # 12/12 wins: lower bound 0.76, but only 12 valid
    result = gate(r, POLICY, champion_version=None)
    assert not result.passed
    assert result.reasons == ["vs base/scorer: 12 valid comparisons, fewer than 30"]


def test_every_judge_must_pass():
    r = report(comparison("base", 35, 0, 5, judge="scorer"), comparison("base", 20, 0, 20, judge="gpt"))
    result = gate(r, POLICY, champion_version=None)
    assert not result.passed and [c.passed for c in result.checks] == [True, False]


def test_a_ruled_opponent_that_was_not_judged_fails():
    r = report(comparison("base", 35, 0, 5))
    result = gate(r, POLICY, champion_version="4")  # a champion exists, but nobody judged against it
    assert not result.passed
    assert "judged against champion (none), but v4 holds champion now: re-evaluate against it" in result.reasons
    assert "vs champion: ci_low >= 0.45: not judged" in result.reasons


def test_figures_against_another_champion_are_stale():
    r = report(comparison("base", 35, 0, 5), comparison("champion", 30, 5, 5), champion="4")
    result = gate(r, POLICY, champion_version="5")
    assert not result.passed
    assert result.reasons == ["judged against champion v4, but v5 holds champion now: re-evaluate against it"]


def test_a_first_champion_clears_the_production_rules():
    """No looser first step: the demo's old first run (0.267 [0.109, 0.520] vs base) is refused, and a policy key
    for a looser first rule no longer exists."""
    r = report(comparison("base", 4, 0, 11))
    result = gate(r, PromotionPolicy(min_valid_comparisons=10), champion_version=None)
    assert not result.passed and result.rules == ["vs base: ci_low > 0.5"]
    with pytest.raises(ValueError, match="first_champion_rules"):
        PromotionPolicy(first_champion_rules=[])


def test_default_first_champion_rules_drop_only_the_champion_rule():
    result = gate(report(comparison("base", 35, 0, 5)), POLICY, champion_version=None)
    assert result.passed and result.rules == ["vs base: ci_low > 0.5"]


def test_an_llm_judge_not_admitted_is_reported_but_not_counted():
    """A generous LLM judge without a calibration on record cannot carry a version through the gate; the result
    names the judges it counted and why the other did not count."""
    from empathy_distill.judging.admission import decide

    identity = {
        "key": "k",
        "model": "smollm2-135m-instruct",
        "endpoint": "local:x",
        "prompt_hash": "sha256:" + "0" * 64,
    }
    refused = decide(identity, [], 0.55)
    r = report(comparison("base", 40, 0, 0, judge="llm"), comparison("base", 20, 0, 20, judge="scorer"))
    r.judge_admission = {"llm": Admission(identity=identity, **refused)}
    result = gate(r, POLICY, champion_version=None)
    assert not result.passed and result.judges_used == ["scorer"]
    assert result.judges_refused == {"llm": refused["reason"]}
    assert "no calibration on record" in refused["reason"]
    alone = report(comparison("base", 40, 0, 0, judge="llm"))
    alone.judge_admission = r.judge_admission
    assert gate(alone, POLICY, None).reasons == ["vs base: ci_low > 0.5: judged by no admitted judge"]
    admitted = decide(identity, [{"agreement": 0.61, "pairs": 240, "parse_rate": 0.97, "position_bias": 0.55}], 0.55)
    alone.judge_admission = {"llm": Admission(identity=identity, **admitted)}
    assert admitted["admitted"] and gate(alone, POLICY, None).passed


def test_a_calibration_below_the_bar_or_on_too_few_pairs_admits_nothing():
    from empathy_distill.judging.admission import decide

    identity = {"key": "k", "model": "m", "endpoint": "e", "prompt_hash": "sha256:" + "1" * 64}
    low = decide(identity, [{"agreement": 0.51, "pairs": 300, "parse_rate": 0.9, "position_bias": 0.8}], 0.55)
    assert not low["admitted"]
    assert low["reason"] == (
        "judge m (prompt 111111111111): agreement 0.510 on 300 pairs, parse rate 0.90, first-position share 0.80, "
        "below evaluation.min_judge_agreement 0.55"
    )
    few = decide(identity, [{"agreement": 0.9, "pairs": 50}], 0.55)
    assert not few["admitted"] and "1 on fewer than 200 pairs" in few["reason"]
