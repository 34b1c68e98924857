"""Step: Great Expectations over the SFT rows and DPO pairs; failures quarantined with reasons."""

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import BootstrapConfig, ValidationConfig
from empathy_distill.data.ingest import quarantine_jsonl
from empathy_distill.data.reports import TrainingSetReport
from empathy_distill.stages import validate_sets_stage
from empathy_distill.tracking import log_training_sets
from materializers import DialogueTableMaterializer
from steps.console import stage_done


@step(
    experiment_tracker=True,
    output_materializers={
        "sft_train": DialogueTableMaterializer,
        "dpo_train": DialogueTableMaterializer,
        "training_quarantine": DialogueTableMaterializer,
    },
)
def validate_training_sets(
    dialogues: pd.DataFrame,
    sft_rows: pd.DataFrame,
    dpo_pairs: pd.DataFrame,
    bootstrap: BootstrapConfig,
    validation: ValidationConfig,
    data_path: str = "",
) -> tuple[
    Annotated[pd.DataFrame, "sft_train"],
    Annotated[pd.DataFrame, "dpo_train"],
    Annotated[pd.DataFrame, "training_quarantine"],
    Annotated[TrainingSetReport, "training_report"],
]:
    """Non-empty, not over-long, chosen != rejected, no duplicates, no test-split leakage."""
    sft, dpo, quarantine, report = validate_sets_stage(dialogues, sft_rows, dpo_pairs, bootstrap, validation)
    # a set's source is the data file it was built from
    log_training_sets(report, quarantine_jsonl(quarantine), {"sft_train": sft, "dpo_train": dpo}, source=data_path)
    log_metadata({k: v for k, v in report if isinstance(v, int)})
    stage_done(
        f"{report.sft_rows} SFT rows and {report.dpo_pairs} DPO pairs kept, {report.rows_quarantined} "
        "quarantined, "
        f"test leakage {report.test_leakage}"
    )
    return sft, dpo, quarantine, report
