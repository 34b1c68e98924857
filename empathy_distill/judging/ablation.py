"""The ablation table: one row per grid cell (method, strategy, stages), win rates per opponent."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from empathy_distill.judging.results import EvaluationReport


def cells(methods: list[str], strategies: list[str]) -> list[tuple[str, str]]:
    """(method, strategy) pairs: direct once (it has no strategy), improvement methods x strategies."""
    out = [("direct", "none")] if "direct" in methods else []
    out += [(m, s) for m in methods if m != "direct" for s in strategies]
    return out


def cell_label(method: str, strategy: str, stages: str) -> str:
    return f"{method}__{strategy}__{stages.replace('+', '_')}"


def ablation_table(reports: list[EvaluationReport]) -> pd.DataFrame:
    """Paper-style: rows = cells, columns = win rate [CI] per (opponent, judge)."""
    rows = []
    for report in reports:
        method, strategy, stages = report.label.split("__")
        row = {
            "method": method,
            "strategy": strategy,
            "stages": stages.replace("_", "+"),
            "valid": "yes" if report.valid else "NO",
            "_reasons": report.invalid_text(),
        }
        for c in report.comparisons:
            key = f"vs {c.opponent} ({c.judge})"
            row[key] = f"{c.win_rate:.3f} [{c.ci_low:.2f}, {c.ci_high:.2f}]"
            row[f"_{key}"] = c.win_rate
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["method", "strategy", "stages"]).reset_index(drop=True)


def ablation_markdown(table: pd.DataFrame) -> str:
    shown = [c for c in table.columns if not c.startswith("_")]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(str(v) for v in rec) + " |" for rec in table[shown].itertuples(index=False)]
    why = [
        f"- {row['method']} / {row['strategy']} / {row['stages']} is not valid: "
        + (row.get("_reasons") or "no reason recorded")
        for row in table.to_dict("records")
        if row["valid"] != "yes"
    ]
    return (
        "## Ablation: win rates of the tuned student [95% Wilson interval]\n\n"
        + "\n".join(lines)
        + "\n\nA cell that is not valid (a missing opponent, too many invalid comparisons or degenerate replies, "
        "failed judge requests) is not fit to compare." + ("\n\n" + "\n".join(why) if why else "") + "\n"
    )


def ablation_plot(reports: list[EvaluationReport], path: str | Path) -> Path:
    """Grouped bars: one group per cell, one bar per (opponent, judge), CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [r.label.replace("__", "\n") for r in reports]
    series = sorted({(c.opponent, c.judge) for r in reports for c in r.comparisons})
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(reports)), 3.8))
    for i, (opponent, judge) in enumerate(series):
        found = [next((c for c in r.comparisons if c.opponent == opponent and c.judge == judge), None) for r in reports]
        rates = [c.win_rate if c else np.nan for c in found]
        err = [[c.win_rate - c.ci_low if c else 0 for c in found], [c.ci_high - c.win_rate if c else 0 for c in found]]
        ax.bar(np.arange(len(reports)) + i * width, rates, width, yerr=err, capsize=3, label=f"vs {opponent} ({judge})")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(np.arange(len(reports)) + width * (len(series) - 1) / 2, labels, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate")
    ax.legend(fontsize=7, ncol=min(len(series), 3))
    ax.set_title("Ablation: methods x strategies x training stages")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
