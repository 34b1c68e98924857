"""Step: the paper-style comparison table and one plot over every evaluated cell of this run."""

import tempfile
from pathlib import Path
from typing import Annotated

import mlflow
from zenml import get_step_context, step
from zenml.client import Client
from zenml.types import MarkdownString

from empathy_distill.judging.ablation import ablation_markdown, ablation_plot, ablation_table
from empathy_distill.judging.results import EvaluationReport
from steps.console import stage_done


@step(experiment_tracker=True, enable_cache=False)
def summarize_ablation() -> tuple[
    Annotated[list[EvaluationReport], "ablation_reports"], Annotated[MarkdownString, "ablation_table"]
]:
    """Reads the evaluation report of every cell of the current run (run it after them)."""
    run = Client().get_pipeline_run(get_step_context().pipeline_run.id)
    reports = [
        s.outputs["evaluation_report"][0].load()
        for name, s in run.steps.items()
        if name.startswith("evaluate_") and "evaluation_report" in s.outputs
    ]
    table = ablation_table(reports)
    markdown = ablation_markdown(table)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(ablation_plot(reports, Path(tmp) / "ablation.png")), "ablation")
        (Path(tmp) / "ablation.md").write_text(markdown)
        mlflow.log_artifact(str(Path(tmp) / "ablation.md"), "ablation")
    stage_done(f"{len(reports)} cells compared")
    return reports, MarkdownString(markdown)
