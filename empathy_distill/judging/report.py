"""An evaluation report as people read it: the Markdown table, the win-rate plot, the files logged to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from empathy_distill.judging.degenerate import DegenerateCounts
from empathy_distill.judging.results import Comparison, EvaluationReport


def report_markdown(report: EvaluationReport) -> str:
    """The paper-style table: one line per (opponent, judge)."""
    lines = [
        f"## Evaluation of `{report.candidate}`",
        "",
        f"Valid: {'yes' if report.valid else 'NO (' + report.invalid_text() + ')'}. "
        f"Intervals: 95% {report.ci_method} score intervals, ties counted half.",
        "",
        "| opponent | judge | win rate | 95% CI | W / T / L | invalid | consistency | LC win rate "
        "| degenerate (candidate / opponent) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report.comparisons:
        lines.append(
            f"| {c.opponent} | {c.judge} | {c.win_rate:.3f} | [{c.ci_low:.3f}, {c.ci_high:.3f}] | "
            f"{c.wins} / {c.ties} / {c.losses} "
            f"| {c.invalid} | {c.position_consistency:.2f} | {c.length_controlled_win_rate:.3f} "
            f"| {degenerate_cell(c)} |"
        )
    # the candidate's replies are the same in every comparison: their examples once
    first = report.comparisons[0].degenerate.candidate.examples if report.comparisons else {}
    examples = [(reason, text) for reason, texts in first.items() for text in texts]
    if examples:
        lines += ["", "Degenerate candidate replies (examples):", ""]
        lines += [f"- {reason}: {text!r}" for reason, text in examples]
    for a in report.agreement:
        lines.append(f"\nCohen's kappa ({a.opponent}, {' vs '.join(a.judges)}): {a.kappa:.3f}")
    return "\n".join(lines) + "\n"


def degenerate_cell(c: Comparison) -> str:
    """``3/50 (2 empty, 1 no end of turn) / 0/50``: the candidate's degenerate replies, then the opponent's."""

    def side(counts: DegenerateCounts) -> str:
        if not counts.n:
            return "-"
        kinds = counts.kinds()
        return f"{counts.total}/{counts.n}" + (f" ({kinds})" if kinds else "")

    return f"{side(c.degenerate.candidate)} / {side(c.degenerate.opponent)}"


def bar_texts(report: EvaluationReport) -> list[tuple[str, str]]:
    """(axis label, text on the bar) for each (opponent, judge): n and W/T/L under the bar, the win rate and its
    interval on it, so the plot reads without the table."""
    out = []
    for c in report.comparisons:
        label = f"vs {c.opponent} ({c.judge})\nn={c.judged}  W/T/L {c.wins}/{c.ties}/{c.losses}"
        out.append((label, f"{c.win_rate:.2f}\n[{c.ci_low:.2f}, {c.ci_high:.2f}]"))
    return out


def report_plot(report: EvaluationReport, path: str | Path) -> Path:
    """Bar chart of win rates with CI error bars, one bar per (opponent, judge), each with its value, interval, n
    and W/T/L; the 0.5 line labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = report.comparisons
    texts = bar_texts(report)
    rates = [c.win_rate for c in comps]
    err = [[max(c.win_rate - c.ci_low, 0) for c in comps], [max(c.ci_high - c.win_rate, 0) for c in comps]]
    fig, ax = plt.subplots(figsize=(max(4.5, 2.0 * len(comps)), 3.8))
    ax.bar(range(len(comps)), rates, yerr=err, capsize=5, color="#4C72B0")
    for i, (c, (_, value)) in enumerate(zip(comps, texts)):
        ax.text(i, min(c.ci_high + 0.03, 0.97), value, ha="center", va="bottom", fontsize=7)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.text(len(comps) - 0.5, 0.51, "0.5: no better than the opponent", ha="right", va="bottom", fontsize=7)
    ax.set_xticks(range(len(comps)), [label for label, _ in texts], fontsize=7)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("win rate (ties = 1/2)")
    ax.set_title(f"{report.candidate}: win rates, 95% {report.ci_method} intervals", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def save_report(report: EvaluationReport, folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "evaluation.json", "markdown": folder / "evaluation.md", "plot": folder / "win_rates.png"}
    paths["json"].write_text(report.to_json())
    paths["markdown"].write_text(report_markdown(report))
    report_plot(report, paths["plot"])
    return paths


def report_metadata(report: EvaluationReport) -> dict[str, Any]:
    """What the evaluation step shows in ZenML: validity, its reasons, the interval method, each win rate (a win rate
    with nothing valid behind it written as text: NaN is not JSON, and it is never dropped)."""
    metadata: dict[str, Any] = {
        "valid": report.valid,
        "invalid_reasons": report.invalid_text() or "none",
        "ci_method": report.ci_method,
    }
    # NaN is not JSON: a win rate with nothing valid behind it is written as text, never dropped
    metadata.update(
        {
            f"{c.opponent}.{c.judge}.win_rate": c.win_rate if c.win_rate == c.win_rate else "NaN (no valid comparisons)"
            for c in report.comparisons
        }
    )
    return metadata


def report_line(report: EvaluationReport) -> str:
    """The evaluation stage's one line: dialogues judged, the win rate against each opponent, validity."""
    rates = ", ".join(f"vs {c.opponent} {c.win_rate:.2f}" for c in report.comparisons)
    return f"{report.test_dialogues} dialogues judged in both orders: {rates}; valid {report.valid}"
