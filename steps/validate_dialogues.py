"""Step: Great Expectations validation, quarantine, split and data hash, logged to MLflow."""

from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import DataConfig, ValidationConfig
from empathy_distill.data.ingest import quarantine_jsonl, require_rows
from empathy_distill.data.ingest import validate_dialogues as validate
from empathy_distill.data.reports import IngestReport
from empathy_distill.tracking import log_ingest
from materializers import DialogueTableMaterializer
from steps.console import stage_done


@step(
    experiment_tracker=True,
    output_materializers={"dialogues": DialogueTableMaterializer, "quarantine": DialogueTableMaterializer},
)
def validate_dialogues(
    raw_rows: pd.DataFrame,
    rejected_records: pd.DataFrame,
    read_info: dict[str, Any],
    data: DataConfig,
    validation: ValidationConfig,
) -> tuple[
    Annotated[pd.DataFrame, "dialogues"],
    Annotated[pd.DataFrame, "quarantine"],
    Annotated[IngestReport, "ingest_report"],
]:
    """Keeps valid rows, quarantines the rest with a reason, and fails when nothing is kept."""
    result = validate(raw_rows, rejected_records, read_info, data, validation)
    log_ingest(result.report, quarantine_jsonl(result.quarantine), table=result.table)
    log_metadata({k: v for k, v in result.report if isinstance(v, (int, str))})
    require_rows(result)
    r = result.report
    stage_done(
        f"{r.rows_kept} rows kept, {r.rows_quarantined} quarantined; {r.dialogues_kept} dialogues "
        f"({r.train_dialogues} train / {r.test_dialogues} test)"
    )
    return result.table, result.quarantine, result.report
