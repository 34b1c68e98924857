"""Step: SFT rows and DPO pairs from the dialogues and the teacher's rewrite log."""

from typing import Annotated

import pandas as pd
from zenml import step

from empathy_distill.config import BootstrapConfig
from empathy_distill.data.reports import BootstrapReport
from empathy_distill.stages import training_sets_stage
from materializers import DialogueTableMaterializer
from steps.console import stage_done


@step(output_materializers={"sft_rows": DialogueTableMaterializer, "dpo_pairs": DialogueTableMaterializer})
def build_training_sets(
    dialogues: pd.DataFrame, bootstrap_log: pd.DataFrame, bootstrap_report: BootstrapReport, bootstrap: BootstrapConfig
) -> tuple[Annotated[pd.DataFrame, "sft_rows"], Annotated[pd.DataFrame, "dpo_pairs"]]:
    """``direct`` filters recorded responses by rating; the improvement methods use the teacher's rewrites."""
    sft, dpo = training_sets_stage(dialogues, bootstrap_log, bootstrap)
    stage_done(f"{len(sft)} SFT rows, {len(dpo)} DPO pairs ({bootstrap.method})")
    return sft, dpo
