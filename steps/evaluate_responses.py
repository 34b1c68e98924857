"""Step: pairwise judging of the tuned student (both orders, every judge) and the report."""

import tempfile
from typing import Annotated, Any

import mlflow
import pandas as pd
from zenml import log_metadata, step
from zenml.types import MarkdownString

from empathy_distill.config import EvaluationConfig
from empathy_distill.judging.protocol import run_evaluation
from empathy_distill.judging.registered import register_judges
from empathy_distill.judging.report import report_line, report_markdown, report_metadata, save_report
from empathy_distill.judging.results import EvaluationReport
from empathy_distill.tracking import log_evaluation, log_verdicts
from steps.console import stage_done


@step(experiment_tracker=True)
def evaluate_responses(
    generations: pd.DataFrame, dialogues: pd.DataFrame, evaluation: EvaluationConfig, label: str = ""
) -> tuple[Annotated[EvaluationReport, "evaluation_report"], Annotated[MarkdownString, "evaluation_table"]]:
    """Win rates with Wilson intervals, validity, consistency, invalid counts, LC win rates; the table renders in the
    dashboard."""
    verdicts: list[dict[str, Any]] = []
    report = run_evaluation(generations, dialogues, evaluation, verdicts=verdicts)
    report.label = label
    with tempfile.TemporaryDirectory() as tmp:
        log_evaluation(report, save_report(report, tmp), prefix=f"ablation.{label}" if label else "eval")
    log_verdicts(verdicts, label)
    run = mlflow.active_run()
    if run is not None:  # the judge definitions, reusable across runs (where MLflow can hold them)
        report.registered_judges = register_judges(evaluation.judges, run.info.experiment_id)
    log_metadata(report_metadata(report))
    stage_done(report_line(report))
    return report, MarkdownString(report_markdown(report))
