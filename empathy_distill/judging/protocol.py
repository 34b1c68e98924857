"""The evaluation protocol: every pair judged in both orders, by every configured judge.

A comparison is (dialogue, candidate = the tuned student's reply, opponent). Each
judge gives one verdict with the candidate shown first and one with it shown
second; :func:`~empathy_distill.judging.stats.combine_orders` turns the two into a
win, loss, tie or invalid. Per opponent and judge the report holds the win rate
with a 95% Wilson interval, the counts, the position-consistency rate, the invalid
count and the length-controlled win rate; with two or more judges, Cohen's kappa.

Degenerate replies (:mod:`empathy_distill.judging.degenerate`) are counted per side and
opponent; a comparison where only the candidate's is degenerate is a loss whatever the judge
said. A report is ``valid`` only when every configured opponent was judged by every judge,
the candidate has no more degenerate replies than ``max_degenerate_fraction``,
and no (judge, opponent) has more invalid comparisons than ``max_invalid_fraction``;
otherwise ``invalid_reasons`` says why. Nothing is dropped: a win rate with no valid
comparison stays NaN and makes the report invalid.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

from empathy_distill.config import EvaluationConfig
from empathy_distill.judging import degenerate
from empathy_distill.judging.admission import admissions
from empathy_distill.judging.judges import PairJudge, build_judges
from empathy_distill.judging.results import Admission, Agreement, Comparison, Degenerate, EvaluationReport
from empathy_distill.judging.stats import (
    CI_METHOD,
    cohen_kappa,
    combine_orders,
    length_controlled_win_rate,
    position_consistency,
    win_rate_ci,
)
from empathy_distill.tracing import SpanRecord, now_ns, record_trace

logger = logging.getLogger(__name__)

OPPONENT_COLUMNS = {"base": "base_response", "human": "ref_human", "champion": "champion_response"}


def judge_both_orders(
    judge: PairJudge, frame: pd.DataFrame, candidate: str, opponent: str
) -> list[tuple[str | None, str | None]]:
    situations, utterances = list(frame["situation"]), list(frame["utterance"])
    cand, opp = list(frame[candidate]), list(frame[opponent])
    both = judge.verdicts(situations * 2, utterances * 2, cand + opp, opp + cand)
    return list(zip(both[: len(cand)], both[len(cand) :]))


def finished_column(frame: pd.DataFrame, column: str) -> list[Any] | None:
    """``<side>_finished`` beside ``<side>_response`` (generated replies); None for recorded ones."""
    name = column.removesuffix("_response") + "_finished"
    return list(frame[name]) if column.endswith("_response") and name in frame.columns else None


def evaluate(
    frame: pd.DataFrame,
    judges: Sequence[PairJudge],
    opponents: dict[str, str],
    candidate: str = "tuned_response",
    max_invalid_fraction: float = 0.1,
    skipped_opponents: Sequence[str] = (),
    max_degenerate_fraction: float = 0.05,
    verdicts: list[dict[str, Any]] | None = None,
) -> EvaluationReport:
    """The full report for ``candidate`` against each opponent column, by each judge.

    Args:
        frame: one row per test dialogue with ``situation``, ``utterance`` and the response columns.
        judges: the judges to ask.
        opponents: report label -> column, e.g. ``{"base": "base_response", "human": "ref_human"}``.
        candidate: the column of the model under test.
        max_invalid_fraction: above this share of invalid comparisons a (judge, opponent) is not valid.
        max_degenerate_fraction: above this share of degenerate candidate replies (empty, no end-of-turn,
            repetitive) the report is not valid.
        skipped_opponents: configured opponents the data has no responses for (they make the report not valid).
        verdicts: when given, one row per (judge, opponent, dialogue) is appended: both replies, each order's
            verdict, the counted outcome and the degenerate flags (:func:`verdict_rows`).
    """
    report = EvaluationReport(
        candidate=candidate,
        ci_method=CI_METHOD,
        max_invalid_fraction=max_invalid_fraction,
        max_degenerate_fraction=max_degenerate_fraction,
        skipped_opponents=list(skipped_opponents),
    )
    spans: list[SpanRecord] = []
    begun = now_ns()
    for label, column in opponents.items():
        # a missing recorded reply is no comparison; a generated reply is always compared, empty or not
        recorded = column.startswith("ref_")
        rows = frame[frame[column].notna() & (frame[column].str.strip() != "")] if recorded else frame
        by_judge = {}
        for judge in judges:
            started = now_ns()
            entry, outcomes = _compare(judge, rows, label, candidate, column, verdicts)
            report.comparisons.append(entry)
            spans.append(judging_span(judge.name, label, started, entry))
            by_judge[judge.name] = outcomes
        names = list(by_judge)
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                report.agreement.append(
                    Agreement(
                        opponent=label,
                        judges=[names[i], names[j]],
                        kappa=cohen_kappa(by_judge[names[i]], by_judge[names[j]]),
                    )
                )
    record_trace(
        SpanRecord("evaluation", "CHAIN", begun, now_ns(), inputs={"dialogues": len(frame), "candidate": candidate}),
        spans,
    )
    return mark_validity(report)


def _compare(
    judge: PairJudge, rows: pd.DataFrame, label: str, candidate: str, column: str, verdicts: list[dict[str, Any]] | None
) -> tuple[Comparison, list]:
    """One judge on the candidate against one opponent column, in both orders: the report entry and the outcomes
    (the degenerate rule applied); the verdict rows are appended to ``verdicts`` when it is given."""
    cand_reasons = degenerate.reasons_for(list(rows[candidate]), finished_column(rows, candidate))
    opp_reasons = degenerate.reasons_for(list(rows[column]), finished_column(rows, column))
    errors_before = getattr(judge, "request_errors", 0)
    pairs = judge_both_orders(judge, rows, candidate, column)
    judged = [combine_orders(a, b) for a, b in pairs]
    outcomes, ruled = degenerate.apply_to_outcomes(judged, cand_reasons, opp_reasons)
    length_diff = [len(str(c).split()) - len(str(o).split()) for c, o in zip(rows[candidate], rows[column])]
    entry = Comparison.of(
        label,
        judge.name,
        win_rate_ci(outcomes),
        request_errors=getattr(judge, "request_errors", 0) - errors_before,
        position_consistency=position_consistency(pairs),
        length_controlled_win_rate=length_controlled_win_rate(outcomes, length_diff),
        mean_length_diff_words=float(sum(length_diff) / len(length_diff)) if length_diff else 0.0,
        degenerate=Degenerate(
            candidate=degenerate.summarize(list(rows[candidate]), cand_reasons),
            opponent=degenerate.summarize(list(rows[column]), opp_reasons),
            verdicts_overruled=ruled,
            opponent_truncated_ties=degenerate.opponent_truncated(cand_reasons, opp_reasons),
        ),
    )
    if verdicts is not None:
        verdicts.extend(
            verdict_rows(rows, judge.name, label, candidate, column, pairs, outcomes, cand_reasons, opp_reasons)
        )
    return entry, outcomes


def judging_span(judge: str, opponent: str, started: int, entry: Comparison) -> SpanRecord:
    """One judge's pass over one opponent (both orders) as a span of the evaluation's trace."""
    return SpanRecord(
        name=f"judge {judge} vs {opponent}",
        span_type="EVALUATOR",
        start_ns=started,
        end_ns=now_ns(),
        inputs={"judge": judge, "opponent": opponent, "pairs": entry.n},
        outputs={k: v for k, v in entry.figures().items() if k != "n"},
        attributes={"position_consistency": entry.position_consistency},
    )


OUTCOME_LABELS = {1.0: "win", 0.5: "tie", 0.0: "loss", None: "invalid"}


def verdict_rows(
    rows: pd.DataFrame,
    judge: str,
    opponent: str,
    candidate: str,
    column: str,
    pairs: Sequence[tuple[str | None, str | None]],
    outcomes: Sequence[float | None],
    cand_reasons: Sequence[str | None],
    opp_reasons: Sequence[str | None],
) -> list[dict[str, Any]]:
    """What one judge said about each dialogue against one opponent, as a reader browses it: the verdicts as the
    judge saw the positions (A = shown first), the outcome counted for the candidate after the degenerate rules."""
    ids = rows["dialogue_id"] if "dialogue_id" in rows.columns else rows.index
    return [
        {
            "judge": judge,
            "opponent": opponent,
            "dialogue_id": str(did),
            "situation": str(sit),
            "utterance": str(utt),
            "candidate_reply": str(cand),
            "opponent_reply": str(opp),
            "verdict_candidate_first": first or "invalid",
            "verdict_candidate_second": second or "invalid",
            "outcome": OUTCOME_LABELS[outcome],
            "candidate_degenerate": cr or "",
            "opponent_degenerate": orr or "",
        }
        for did, sit, utt, cand, opp, (first, second), outcome, cr, orr in zip(
            ids,
            rows["situation"],
            rows["utterance"],
            rows[candidate],
            rows[column],
            pairs,
            outcomes,
            cand_reasons,
            opp_reasons,
        )
    ]


def mark_validity(report: EvaluationReport) -> EvaluationReport:
    """Sets ``valid`` and ``invalid_reasons`` (by the report's own thresholds): what would make these win rates
    unfit to promote on."""
    reasons = [f"opponent '{o}': no responses in this data" for o in report.skipped_opponents]
    most_invalid, most_degenerate = report.max_invalid_fraction, report.max_degenerate_fraction
    for c in report.comparisons:
        where = f"{c.opponent}/{c.judge}"
        bad = c.degenerate.candidate
        if bad.n and bad.share > most_degenerate:
            reasons.append(
                f"{where}: {bad.total} of {bad.n} {report.candidate} replies degenerate ({bad.kinds()}; "
                f"{bad.share:.0%} > {most_degenerate:.0%})"
            )
        if c.n == 0:
            reasons.append(f"{where}: no comparisons")
        elif c.invalid / c.n > most_invalid:
            reasons.append(
                f"{where}: {c.invalid} of {c.n} comparisons invalid ({c.invalid / c.n:.0%} > {most_invalid:.0%})"
            )
        if c.request_errors:
            reasons.append(f"{where}: {c.request_errors} judge requests failed")
    if not report.comparisons:
        reasons.append("no comparisons at all")
    report.valid = not reasons
    report.invalid_reasons = reasons
    return report


def evaluation_frame(generations: pd.DataFrame, dialogues: pd.DataFrame) -> pd.DataFrame:
    """Generations joined with each dialogue's situation and utterance (only the judged dialogues are grouped: the
    join's cost follows the test set, not the whole table)."""
    ctx = (
        dialogues[dialogues["dialogue_id"].isin(generations["dialogue_id"])]
        .groupby("dialogue_id")
        .agg(situation=("situation", "first"), utterance=("utterance", "first"))
        .reset_index()
    )
    return generations.merge(ctx, on="dialogue_id", how="left")


def run_evaluation(
    generations: pd.DataFrame,
    dialogues: pd.DataFrame,
    cfg: EvaluationConfig,
    verdicts: list[dict[str, Any]] | None = None,
) -> EvaluationReport:
    """Judges the tuned student against the configured opponents that the data has; ``verdicts`` collects the
    per-dialogue rows (:func:`verdict_rows`)."""
    frame = evaluation_frame(generations, dialogues)
    columns = {**OPPONENT_COLUMNS, "llm": f"ref_{cfg.reference_llm}"}
    opponents = {o: columns[o] for o in cfg.opponents if columns[o] in frame.columns}
    # no champion yet is not a gap in the data: the first registered version has nothing to beat
    skipped = [o for o in cfg.opponents if o not in opponents and o != "champion"]
    if skipped:
        logger.warning("no responses for opponents %s in this data; skipped", skipped)
    report = evaluate(
        frame,
        build_judges(cfg, dialogues),
        opponents,
        max_invalid_fraction=cfg.max_invalid_fraction,
        skipped_opponents=skipped,
        max_degenerate_fraction=cfg.max_degenerate_fraction,
        verdicts=verdicts,
    )
    report.test_dialogues = len(frame)
    report.judge_admission = {name: Admission(**a) for name, a in admissions(cfg).items()}
    champion = frame["champion_version"].dropna().unique() if "champion_version" in frame.columns else []
    report.champion_version = str(champion[0]) if len(champion) else None
    return report
