"""The ablation table says why a cell is not fit to compare, under the table, cell by cell."""

from __future__ import annotations

from empathy_distill.judging.ablation import ablation_markdown, ablation_table
from empathy_distill.judging.results import Comparison, EvaluationReport
from empathy_distill.judging.stats import win_rate_ci


def report(label: str, valid: bool, reasons: list[str]) -> EvaluationReport:
    comparison = Comparison.of("base", "scorer", win_rate_ci([1.0] * 12 + [0.5] * 2 + [0.0] * 2))
    return EvaluationReport(
        candidate="tuned_response", label=label, valid=valid, invalid_reasons=reasons, comparisons=[comparison]
    )


def test_an_invalid_cell_is_marked_and_its_reasons_printed():
    reason = "base/scorer: 1 of 15 tuned replies degenerate (1 no end of turn; 7% > 5%)"
    text = ablation_markdown(
        ablation_table([report("direct__none__sft_dpo", False, [reason]), report("direct__none__sft", True, [])])
    )
    rows = [line for line in text.splitlines() if line.startswith("| direct")]
    assert [r.split(" | ")[2:4] for r in rows] == [["sft", "yes"], ["sft+dpo", "NO"]]
    assert f"- direct / none / sft+dpo is not valid: {reason}" in text.splitlines()
    assert "direct / none / sft is not valid" not in text
    assert "_reasons" not in text  # the reasons are not a column of the table


def test_a_grid_with_every_cell_valid_prints_no_reason_line():
    text = ablation_markdown(ablation_table([report("direct__none__sft", True, [])]))
    assert not [line for line in text.splitlines() if line.startswith("- ")]
