"""Step: read the input dialogues into unvalidated long rows."""

from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import DataConfig
from empathy_distill.data.ingest import read_dialogues
from materializers import DialogueTableMaterializer
from steps.console import stage_done


@step(
    experiment_tracker=True,
    output_materializers={"raw_rows": DialogueTableMaterializer, "rejected_records": DialogueTableMaterializer},
)
def ingest_dialogues(
    data: DataConfig, source_fingerprint: str
) -> tuple[
    Annotated[pd.DataFrame, "raw_rows"],
    Annotated[pd.DataFrame, "rejected_records"],
    Annotated[dict[str, Any], "read_info"],
]:
    """Parses ``data.path`` in its format (detected when ``auto``).

    Args:
        data: where the dialogues come from.
        source_fingerprint: sha256 of the input bytes; a parameter only so that
            ZenML's cache sees a changed file.
    """
    rows, rejected, info = read_dialogues(data.path, data.format)
    info["source_fingerprint"] = source_fingerprint
    log_metadata({"format": info["format"], "records_read": info["records_read"], "rows": len(rows)})
    stage_done(
        f"{info['records_read']} records read as {info['format']}, {len(rows)} response rows, {len(rejected)} rejected"
    )
    return rows, rejected, info
