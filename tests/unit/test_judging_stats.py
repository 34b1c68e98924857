"""Statistics on data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from empathy_distill.judging.stats import (
    cohen_kappa,
    combine_orders,
    length_controlled_win_rate,
    position_consistency,
    wilson_interval,
    win_rate,
    win_rate_ci,
)

Z95 = 1.959963984540054


def test_seventy_wins_of_a_hundred():
    result = win_rate_ci([1.0] * 70 + [0.0] * 30)
    assert result.win_rate == pytest.approx(0.7)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.6041, 0.7810), abs=1e-4)  # Wilson, published tables
    assert (result.wins, result.losses, result.ties, result.invalid, result.n) == (70, 30, 0, 0, 100)


@pytest.mark.parametrize(
    "outcomes, low, high",
    [
        ([1.0] * 14, 0.7847, 1.0),  # unanimous: never a zero-width interval (the bootstrap gave [1, 1])
        ([0.0] * 14, 0.0, 0.2153),
        ([1.0] * 7 + [0.0] * 7, 0.2680, 0.7320),
        ([1.0] * 5 + [0.5] * 4 + [0.0] * 5, 0.2680, 0.7320),  # ties count half: 7 of 14
        ([1.0] * 10 + [0.5] * 4, 0.6006, 0.9599),  # no loss, still below 1 and above 0.6 (12 of 14)
    ],
)
def test_known_intervals(outcomes, low, high):
    result = win_rate_ci(outcomes)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=1e-4)
    assert result.ci_high - result.ci_low > 0.2


def test_wilson_bounds_solve_the_score_equation():
    # each bound p satisfies (p_hat - p)^2 = z^2 p (1 - p) / n, the definition of the Wilson interval
    for successes, n in [(3, 20), (12.5, 14), (40, 41)]:
        p_hat = successes / n
        for p in wilson_interval(successes, n):
            assert (p_hat - p) ** 2 == pytest.approx(Z95**2 * p * (1 - p) / n, rel=1e-6)


def test_ties_count_half_and_invalid_is_never_a_loss():
    assert win_rate([1.0, 0.5, 0.0, None, None]) == pytest.approx(0.5)
    result = win_rate_ci([1.0, 1.0, None])
    assert (result.win_rate, result.invalid, result.n) == (1.0, 1, 3)
    assert result.ci_low == pytest.approx(2 / (2 + Z95**2))  # two valid wins, the invalid one is not a comparison
    assert np.isnan(win_rate([None, None]))
    assert np.isnan(win_rate_ci([None, None]).ci_low)


@pytest.mark.parametrize(
    "first, swapped, expected",
    [
        ("A", "B", 1.0),
        ("B", "A", 0.0),
        ("tie", "tie", 0.5),
        ("A", "A", 0.5),
        ("B", "B", 0.5),
        ("A", "tie", 0.5),
        (None, "B", None),
        ("A", None, None),
    ],
)
def test_swap_logic(first, swapped, expected):
    assert combine_orders(first, swapped) == expected


def test_position_consistency():
    assert position_consistency([("A", "B"), ("B", "A"), ("A", "A"), ("tie", "tie"), (None, "A")]) == pytest.approx(
        3 / 4
    )


def test_kappa_known_values():
    a = [1.0, 0.0, 1.0, 0.5, 0.0, 1.0]
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    # a classic 2x2 example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4
    r1 = [1.0] * 25 + [0.0] * 25
    r2 = [1.0] * 20 + [0.0] * 5 + [1.0] * 10 + [0.0] * 15
    assert cohen_kappa(r1, r2) == pytest.approx(0.4)
    assert cohen_kappa([1.0, None], [None, 0.0]) != cohen_kappa([1.0, None], [None, 0.0])  # nothing valid: NaN


def test_length_control_removes_a_pure_length_preference():
    rng = np.random.default_rng(0)
    diffs = rng.normal(0, 10, 2000)
    # the judge prefers whichever is longer and nothing else: raw win rate follows the length mix
    outcomes = [1.0 if d > 0 else 0.0 for d in diffs + 6]  # the candidate is usually longer
    raw = win_rate(outcomes)
    lc = length_controlled_win_rate(outcomes, list(diffs + 6))
    assert raw > 0.65
    assert abs(lc - 0.5) < 0.1
    # a real preference survives length control
    quality = [1.0 if rng.random() < 0.8 else 0.0 for _ in diffs]
    assert length_controlled_win_rate(quality, list(diffs)) == pytest.approx(0.8, abs=0.05)
