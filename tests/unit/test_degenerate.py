"""Degenerate replies (empty, no end-of-turn, one phrase repeated) are never wins, and too many void the report."""

from __future__ import annotations

import pandas as pd

from empathy_distill.config import PromotionPolicy
from empathy_distill.judging.degenerate import degenerate_reason
from empathy_distill.judging.protocol import evaluate
from empathy_distill.registry.policy import gate


class LongerWins:
    """A judge that a defect can win: it prefers the longer reply (as length-biased judges do)."""

    name = "longer"

    def verdicts(self, situations, utterances, first, second):
        return ["A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie" for a, b in zip(first, second)]


def frame(n: int, tuned: list[str], finished: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dialogue_id": [f"d{i}" for i in range(n)],
            "situation": ["My exam went badly."] * n,
            "utterance": ["I studied for weeks."] * n,
            "tuned_response": tuned,
            "tuned_finished": finished,
            "base_response": ["Sorry to hear that."] * n,
            "base_finished": ["true"] * n,
        }
    ).astype("string")


def test_reasons():
    assert degenerate_reason("") == "empty" and degenerate_reason("   ") == "empty"
    assert degenerate_reason("I am sorry, that must hurt.", finished="false") == "no_end_of_turn"
    assert degenerate_reason("not not not not not not") == "repetitive"
    assert degenerate_reason("I hear you. I hear you. I hear you. I hear you.") == "repetitive"
    assert degenerate_reason("That sounds so hard; I am here if you want to talk it through.") is None


def test_a_run_on_or_repeated_reply_is_a_loss_whatever_the_judge_says():
    n = 40
    long_run_on = "I understand how you feel and I want to help you with everything you need right now"
    tuned = [long_run_on] * 10 + ["so sad so sad so sad so sad so sad so sad"] * 10 + ["A kind, longer reply."] * 20
    finished = ["false"] * 10 + ["true"] * 30
    report = evaluate(frame(n, tuned, finished), [LongerWins()], {"base": "base_response"})
    (c,) = report.comparisons
    # the length-loving judge preferred all 40; the 20 degenerate ones are losses
    assert (c.wins, c.ties, c.losses) == (20, 0, 20)
    bad = c.degenerate.candidate
    assert (bad.no_end_of_turn, bad.repetitive, bad.empty, bad.total) == (10, 10, 0, 20)
    assert bad.examples["no_end_of_turn"][0] == long_run_on
    assert c.degenerate.verdicts_overruled == 20
    # half the replies degenerate, far above 5%: not valid, and the gate refuses whatever the figures
    assert not report.valid and "20 of 40 tuned_response replies degenerate" in report.invalid_reasons[0]
    assert not gate(report, PromotionPolicy(min_valid_comparisons=10), None).passed


def test_an_empty_reply_is_compared_and_lost_not_dropped():
    n = 30
    tuned = [""] + ["A warm reply that helps."] * (n - 1)
    report = evaluate(frame(n, tuned, ["true"] * n), [LongerWins()], {"base": "base_response"})
    (c,) = report.comparisons
    assert c.n == n and c.losses == 1 and c.degenerate.candidate.empty == 1
    assert report.valid  # 1 of 30 is within the 5% limit


def test_truncation_alone_wins_nothing():
    # the base is cut off at max_new_tokens in 24 of 30 replies; otherwise it says what the tuned student says
    n = 30
    whole = "That sounds hard. I am sorry it went that way."
    data = frame(n, [whole] * n, ["true"] * n)
    data["base_response"] = pd.array([whole[:-12]] * 24 + [whole] * 6, dtype="string")
    data["base_finished"] = pd.array(["false"] * 24 + ["true"] * 6, dtype="string")

    class WholeWins:
        """What a judge does with a reply that stops mid-sentence: the whole one wins."""

        name = "whole-wins"

        def verdicts(self, situations, utterances, first, second):
            return ["A" if a == whole != b else "B" if b == whole != a else "tie" for a, b in zip(first, second)]

    report = evaluate(data, [WholeWins()], {"base": "base_response"})
    (c,) = report.comparisons
    # without the rule: 24 wins, 6 ties, ci_low above 0.5 and a promotion won by the base's token limit
    assert (c.wins, c.ties, c.losses) == (0, n, 0) and c.win_rate == 0.5
    assert c.degenerate.opponent.no_end_of_turn == 24
    assert c.degenerate.opponent_truncated_ties == 24 and c.degenerate.verdicts_overruled == 24
    assert not gate(report, PromotionPolicy(min_valid_comparisons=10), None).passed
