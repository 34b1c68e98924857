"""Does this teacher's rewrite beat the reply it rewrites? A small sample answers before the full bootstrap is paid.

The configured method and strategy run on ``sample`` train dialogues (the first ones of the bootstrap's own seeded
order, so the full run reuses these replies from the cache: the check costs nothing twice). Each kept rewrite is
judged against its original by the offline judges in both orders (``judging/protocol.py``'s rule: a win counts
only when both orders agree, a split is a tie); the rewrite's win rate per judge comes with its Wilson interval.
A rewrite the parser refused, or a request that failed, is counted (``parse_failures``, ``failed``) and, in the win
rate, is a loss: a teacher that cannot write the format does not beat anything. The verdict: the teacher passes
when every judge's interval lies above one half.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from empathy_distill.config import BootstrapConfig, EvaluationConfig, JudgeConfig
from empathy_distill.data.reports import CheckReport, RewriteWords
from empathy_distill.judging.judges import PairJudge, build_judges
from empathy_distill.judging.protocol import judge_both_orders
from empathy_distill.judging.stats import combine_orders, win_rate_ci
from empathy_distill.teacher import build_teacher
from empathy_distill.teacher.rewrite import rewrite_with_teacher
from empathy_distill.teacher.types import TeacherError


@dataclass
class CheckVerdict:
    passed: bool
    line: str
    """One line: the figures and what they mean for the run."""

    def raise_unless_passed(self) -> None:
        if not self.passed:
            raise TeacherError(self.line + "; the bootstrap was not started (teacher.check: false skips the check)")


def run_check(
    table: pd.DataFrame, bootstrap: BootstrapConfig, teacher_cfg, evaluation
) -> tuple[CheckReport, CheckVerdict]:
    """The check with the configured teacher (its cache and budget) and the run's offline judges."""

    judges = offline_judges(evaluation, table)
    report = check_teacher(table, bootstrap, build_teacher(teacher_cfg), judges, teacher_cfg.check_dialogues)
    return report, verdict(report)


def check_teacher(
    table: pd.DataFrame, bootstrap: BootstrapConfig, teacher, judges: list[PairJudge], sample: int = 30
) -> CheckReport:
    """Rewrites ``sample`` train dialogues with ``teacher`` and judges each rewrite against its original.

    Returns:
        The report: the teacher's counts (kept, parse failures with reasons, failed, requests, tokens), the word
        lengths of rewrites and originals, and per judge the rewrite's wins, ties, losses, win rate and interval.
    """

    cfg = bootstrap.model_copy(update={"sft_dialogues": sample, "dpo_dialogues": 0})
    log, rewrite = rewrite_with_teacher(table, cfg, teacher)
    ctx = (
        table[table["dialogue_id"].isin(log["dialogue_id"])]
        .groupby("dialogue_id")
        .agg(situation=("situation", "first"), utterance=("utterance", "first"))
        .reset_index()
    )
    frame = log.merge(ctx, on="dialogue_id", how="left")
    kept = frame[frame["status"] == "ok"].reset_index(drop=True)
    lost = len(frame) - len(kept)  # refused by the parser or failed: a loss for the rewrite
    rates = {}
    for judge in judges:
        pairs = judge_both_orders(judge, kept, "improved", "original") if len(kept) else []
        outcomes = [combine_orders(a, b) for a, b in pairs] + [0.0] * lost
        rates[judge.name] = win_rate_ci(outcomes)
    return CheckReport(
        method=bootstrap.method,
        strategy=bootstrap.strategy,
        dialogues=len(frame),
        kept=len(kept),
        parse_failures=int((frame["status"] == "invalid").sum()),
        failed=int((frame["status"] == "error").sum()) + int((frame["status"] == "budget").sum()),
        not_kept_reasons=rewrite.not_ok_reasons,
        parse_failure_rate=float((frame["status"] == "invalid").mean()) if len(frame) else 0.0,
        teacher_requests=rewrite.teacher_requests,
        teacher_usage=rewrite.teacher_usage,
        words=RewriteWords(
            rewrite_mean=_mean_words(kept["improved"]),
            rewrite_max=_max_words(kept["improved"]),
            original_mean=_mean_words(kept["original"]),
            target_mean=bootstrap.target_words,
            limit=bootstrap.max_words,
        ),
        judges=rates,
    )


def offline_judges(evaluation, table: pd.DataFrame) -> list[PairJudge]:
    """The run's offline judges (scorer, reference) as its evaluation configures them; both when it names neither
    (an LLM judge is left out: the check must not spend a second endpoint's budget)."""

    evaluation = evaluation or EvaluationConfig()
    offline = [j for j in evaluation.judges if j.kind in ("scorer", "reference")] or [
        JudgeConfig(name="scorer", kind="scorer"),
        JudgeConfig(name="reference", kind="reference"),
    ]
    return build_judges(evaluation.model_copy(update={"judges": offline}), table)


def verdict(report: CheckReport) -> CheckVerdict:
    """Passed when every judge's interval for the rewrite lies above one half."""
    judges = report.judges
    parts = [
        f"{name} {j.win_rate:.3f} [{j.ci_low:.3f}, {j.ci_high:.3f}] ({j.wins}/{j.ties}/{j.losses})"
        for name, j in judges.items()
    ]
    passed = bool(judges) and all(j.ci_low > 0.5 for j in judges.values())
    head = (
        f"teacher check ({report.method}/{report.strategy}, {report.dialogues} dialogues, "
        f"{report.parse_failures} rewrites refused by the parser, {report.failed} failed): rewrite vs original "
        + "; ".join(parts)
    )
    if passed:
        return CheckVerdict(True, head + ": the rewrites beat their originals beyond doubt")
    return CheckVerdict(
        False,
        head + ": the rewrites do not beat their originals beyond doubt (every judge's interval must lie above 0.5)",
    )


def _words(texts) -> list[int]:
    return [len(str(t).split()) for t in texts]


def _mean_words(texts) -> float:
    words = _words(texts)
    return round(sum(words) / len(words), 1) if words else 0.0


def _max_words(texts) -> int:
    return max(_words(texts), default=0)
