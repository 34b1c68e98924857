"""Statistics of pairwise comparisons: pure functions, tested on data with known answers.

Outcomes are coded per comparison from the candidate's side: ``1.0`` win, ``0.5`` tie,
``0.0`` loss, ``None`` invalid (an unparsable verdict: counted and reported, never a loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

CI_METHOD = "wilson"
"""How every win-rate interval here is computed (named in each report)."""


class WinRate(BaseModel):
    """Win rate with a Wilson score interval and the counts behind it."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    win_rate: float
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int
    invalid: int
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return self.model_dump()


WIN_RATE_FIELDS: tuple[str, ...] = tuple(WinRate.model_fields)
"""The figures of a :class:`WinRate`, in order: what a report's comparison carries before its extras."""


def _valid(outcomes: Sequence[float | None]) -> np.ndarray:
    return np.array([o for o in outcomes if o is not None], dtype=float)


def win_rate(outcomes: Sequence[float | None]) -> float:
    """(wins + ½ ties) / valid comparisons; NaN when nothing is valid."""
    valid = _valid(outcomes)
    return float(valid.mean()) if len(valid) else float("nan")


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion; ties enter as half a success.

    Chosen over a percentile bootstrap, which collapses to a zero-width interval on a
    unanimous result (14 wins of 14 gave [1, 1]) and is too narrow at small n. Wilson
    never collapses (14/14 gives a lower bound of 0.785) and stays within [0, 1].
    Counting a tie as half a win treats it as one Bernoulli half-success, which makes
    the interval slightly wider than the ties' real variance needs: conservative.

    Returns:
        (low, high); NaN for both when ``n`` is 0.
    """
    from scipy.stats import norm

    if n <= 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def win_rate_ci(outcomes: Sequence[float | None], confidence: float = 0.95) -> WinRate:
    """Win rate, its Wilson interval (:data:`CI_METHOD`) and the counts; invalid outcomes are counted, not scored."""
    valid = _valid(outcomes)
    low, high = wilson_interval(float(valid.sum()), len(valid), confidence)
    return WinRate(
        win_rate=float(valid.mean()) if len(valid) else float("nan"),
        ci_low=low,
        ci_high=high,
        wins=int((valid == 1.0).sum()),
        ties=int((valid == 0.5).sum()),
        losses=int((valid == 0.0).sum()),
        invalid=len(outcomes) - len(valid),
        n=len(outcomes),
    )


def combine_orders(first: str | None, swapped: str | None) -> float | None:
    """One outcome from two verdicts on the same pair, candidate shown first then second.

    Verdicts are ``"A"``, ``"B"``, ``"tie"`` or ``None`` (invalid), as the judge saw the
    positions. The candidate is A in ``first`` and B in ``swapped``. Consistent
    verdicts give a win or a loss; inconsistent ones (position bias) a tie; a tie in
    both orders a tie; an invalid verdict in either order makes the comparison invalid.
    """
    if first is None or swapped is None:
        return None
    score_first = {"A": 1.0, "B": 0.0, "tie": 0.5}[first]
    score_swapped = {"B": 1.0, "A": 0.0, "tie": 0.5}[swapped]
    if score_first == score_swapped:
        return score_first
    return 0.5  # inconsistent (e.g. A in both positions): the position decided, not the content


def position_consistency(pairs: Sequence[tuple[str | None, str | None]]) -> float:
    """Share of valid pairs whose two verdicts agree once the swap is undone."""
    valid = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not valid:
        return float("nan")
    agree = sum(1 for a, b in valid if {"A": "B", "B": "A", "tie": "tie"}[a] == b)
    return agree / len(valid)


def cohen_kappa(rater_a: Sequence[float | None], rater_b: Sequence[float | None]) -> float:
    """Cohen's kappa between two judges' outcomes on the same comparisons (invalid pairs dropped)."""
    pairs = [(a, b) for a, b in zip(rater_a, rater_b) if a is not None and b is not None]
    if not pairs:
        return float("nan")
    labels = sorted({x for p in pairs for x in p})
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for a, b in pairs:
        table[index[a], index[b]] += 1
    n = table.sum()
    observed = np.trace(table) / n
    expected = float((table.sum(axis=0) * table.sum(axis=1)).sum() / n**2)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return float((observed - expected) / (1 - expected))


def length_controlled_win_rate(outcomes: Sequence[float | None], length_diffs: Sequence[float]) -> float:
    """Win rate at zero length difference (after AlpacaEval's length-controlled idea).

    Fits ``P(win) = sigmoid(a + b * d)`` by maximum likelihood on the valid outcomes
    (ties count half through fractional targets), where ``d`` is the candidate's
    length minus the opponent's in words (standardized), and returns ``sigmoid(a)``.
    """
    from scipy.optimize import minimize

    data = [(o, d) for o, d in zip(outcomes, length_diffs) if o is not None]
    if not data:
        return float("nan")
    y = np.array([o for o, _ in data], dtype=float)
    d = np.array([x for _, x in data], dtype=float)
    scale = d.std() or 1.0
    x = d / scale

    def nll(params: np.ndarray) -> float:
        z = params[0] + params[1] * x
        log_p = -np.logaddexp(0, -z)
        log_q = -np.logaddexp(0, z)
        return float(-(y * log_p + (1 - y) * log_q).sum() + 1e-3 * (params**2).sum())

    fit = minimize(nll, np.zeros(2), method="L-BFGS-B")
    return float(1 / (1 + np.exp(-fit.x[0])))
