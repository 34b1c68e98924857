"""The verdict parser on saved judge replies."""

import pytest

from empathy_distill.judging.verdict import parse_verdict


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Verdict: A", "A"),
        ("verdict: b", "B"),
        ("Verdict: tie", "tie"),
        ("**Verdict:** Response B", "B"),
        ("Both acknowledge the loss, but B offers support.\nVerdict: B", "B"),
        ("Verdict: A\n\nOn reflection... Verdict: tie", "tie"),
        ("B", "B"),
        ("  tie. ", "tie"),
        ("Verdict: equal", "tie"),
        ("", None),
        (None, None),
        ("Both are good responses.", None),
        ("I think A, or maybe B.", None),
    ],
)
def test_parse_verdict(raw, expected):
    assert parse_verdict(raw) == expected
