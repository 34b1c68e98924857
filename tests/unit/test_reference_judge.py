"""The reference judge: closer to the dialogue's own top-rated replies than to its low-rated ones wins."""

from __future__ import annotations

import pandas as pd

from empathy_distill.judging.reference import ReferenceJudge


def dialogues() -> pd.DataFrame:
    rows = []
    for i, (top, low) in enumerate(
        [
            ("I am so sorry about your dog, losing a friend like that hurts deeply.", "ok whatever"),
            ("Congratulations on the new job, you worked hard for this!", "Jobs are boring."),
        ]
    ):
        for source, text, rating in (("chatgpt", top, 3), ("human", low, 1)):
            rows.append(
                {
                    "dialogue_id": f"d{i}",
                    "situation": f"situation {i}",
                    "utterance": f"utterance {i}",
                    "source": source,
                    "response": text,
                    "rating": rating,
                    "split": "test",
                }
            )
    rows.append(  # all rated alike: no contrast
        {
            "dialogue_id": "d2",
            "situation": "situation 2",
            "utterance": "utterance 2",
            "source": "human",
            "response": "fine",
            "rating": 2,
            "split": "test",
        }
    )
    return pd.DataFrame(rows)


def test_verdicts_follow_the_dialogues_own_ratings_in_both_orders():
    judge = ReferenceJudge.from_dialogues(dialogues())
    sit, utt = ["situation 0", "situation 1", "situation 2"], ["utterance 0", "utterance 1", "utterance 2"]
    good = ["I am really sorry about your dog; that loss hurts.", "Congratulations, you earned this new job!", "x"]
    bad = ["whatever, ok", "Work is boring anyway.", "y"]
    assert judge.verdicts(sit, utt, good, bad) == ["A", "A", "tie"]
    assert judge.verdicts(sit, utt, bad, good) == ["B", "B", "tie"]
    # an empty reply loses to any reply
    assert judge.verdicts(sit[:1], utt[:1], [""], ["whatever, ok"]) == ["B"]
