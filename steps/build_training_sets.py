"""Step: SFT rows and DPO pairs from the dialogues and the bootstrap log."""

from typing import Annotated, Any

import pandas as pd
from zenml import step

from empathy_distill.config import BootstrapConfig
from empathy_distill.datasets import build_direct, sets_from_log
from materializers import DialogueTableMaterializer


@step(output_materializers={"sft_rows": DialogueTableMaterializer, "dpo_pairs": DialogueTableMaterializer})
def build_training_sets(
    dialogues: pd.DataFrame, bootstrap_log: pd.DataFrame, bootstrap_report: dict[str, Any], bootstrap: BootstrapConfig
) -> tuple[Annotated[pd.DataFrame, "sft_rows"], Annotated[pd.DataFrame, "dpo_pairs"]]:
    """``direct`` filters recorded responses by rating; the improvement methods use the teacher's rewrites."""
    if bootstrap.method == "direct":
        sets = build_direct(dialogues, bootstrap)
        return sets.sft, sets.dpo
    return sets_from_log(dialogues, bootstrap_log, bootstrap)
