"""What the plots show and what the summary warns about: smoothed loss with the learning rate, win-rate bars that
carry n, W/T/L and their values, and DPO pairs a student tells apart at once."""

from __future__ import annotations

import random
import statistics

from empathy_distill.judging.report import bar_texts, report_plot
from empathy_distill.judging.results import Comparison, EvaluationReport
from empathy_distill.training.checks import separable_warning
from empathy_distill.training.plots import curve_panels, loss_curve_png, smoothed


def test_smoothing_follows_the_trend_and_damps_the_noise():
    rng = random.Random(0)
    noisy = [2.0 - i / 1000 + rng.gauss(0, 0.3) for i in range(1425)]  # a long SFT run's band of a curve
    smooth = smoothed(noisy)
    assert smooth[0] == noisy[0] and len(smooth) == len(noisy)
    assert (
        statistics.stdev(b - a for a, b in zip(smooth, smooth[1:]))
        < statistics.stdev(b - a for a, b in zip(noisy, noisy[1:])) / 5
    )
    assert abs(statistics.mean(smooth[-200:]) - statistics.mean(noisy[-200:])) < 0.1


def test_the_loss_plot_has_the_learning_rate_beside_the_loss(tmp_path):
    history = [{"step": i, "loss": 3.0 / i, "learning_rate": 1e-3 * (1 - i / 40)} for i in range(1, 41)]
    assert list(curve_panels(history)) == ["loss", "learning_rate"]
    dpo = [{**h, "rewards/accuracies": 0.5} for h in history]
    assert list(curve_panels(dpo, ("loss", "rewards/accuracies"))) == ["loss", "rewards/accuracies", "learning_rate"]
    assert loss_curve_png(history, tmp_path / "c.png", "SFT").stat().st_size > 0
    assert loss_curve_png([{"step": 1, "learning_rate": 1e-3}], tmp_path / "d.png", "SFT") is None  # no loss: none


def test_win_rate_bars_carry_n_wtl_and_their_values(tmp_path):
    fields = ("opponent", "judge", "win_rate", "ci_low", "ci_high", "wins", "ties", "losses")
    rows = [("base", "scorer", 0.6, 0.45, 0.73, 25, 10, 15), ("human", "gpt", 0.3, 0.2, 0.42, 12, 6, 32)]
    comparisons = [Comparison(**dict(zip(fields, row)), invalid=0, n=50) for row in rows]
    report = EvaluationReport(candidate="tuned", comparisons=comparisons)
    assert bar_texts(report) == [
        ("vs base (scorer)\nn=50  W/T/L 25/10/15", "0.60\n[0.45, 0.73]"),
        ("vs human (gpt)\nn=50  W/T/L 12/6/32", "0.30\n[0.20, 0.42]"),
    ]
    assert report_plot(report, tmp_path / "w.png").stat().st_size > 0


def test_dpo_pairs_separable_at_once_are_warned_about():
    early = [{"step": s, "rewards/accuracies": 1.0 if s >= 2 else 0.5} for s in range(1, 101)]
    warning = separable_warning(early, 100)
    assert warning and "reached 1.0 at step 2 of 100 (within the first tenth)" in warning
    late = [{"step": s, "rewards/accuracies": 1.0 if s >= 40 else 0.6} for s in range(1, 101)]
    assert separable_warning(late, 100) is None  # learnt over the run: nothing to say
    assert separable_warning([{"step": 1, "loss": 0.7}], 15) is None
