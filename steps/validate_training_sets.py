"""Step: Great Expectations over the SFT rows and DPO pairs; failures quarantined with reasons."""

from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import BootstrapConfig, ValidationConfig
from empathy_distill.data.hashing import table_digest
from empathy_distill.data.ingest import quarantine_jsonl
from empathy_distill.tracking import log_training_sets
from empathy_distill.validation import validate_training_set
from materializers import DialogueTableMaterializer


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
    Annotated[dict[str, Any], "training_report"],
]:
    """Non-empty, not over-long, chosen != rejected, no duplicates, no test-split leakage."""
    test_ids = set(dialogues.loc[dialogues["split"] == "test", "dialogue_id"])
    sft = validate_training_set(sft_rows, "sft", test_ids, bootstrap.max_words, validation.max_text_chars)
    dpo = validate_training_set(dpo_pairs, "dpo", test_ids, bootstrap.max_words, validation.max_text_chars)
    quarantine = pd.DataFrame(sft.quarantined + dpo.quarantined, columns=["set", "dialogue_id", "field", "reason", "detail"]).astype("string")
    report = {
        "sft_rows_in": len(sft_rows),
        "sft_rows": len(sft.kept),
        "dpo_pairs_in": len(dpo_pairs),
        "dpo_pairs": len(dpo.kept),
        "rows_quarantined": len(quarantine),
        "quarantine_reasons": dict(sft.reasons + dpo.reasons),
        "test_leakage": int((sft.reasons + dpo.reasons).get("test_leakage", 0)),
    }
    report.update(sft_train_hash=table_digest(sft.kept), dpo_train_hash=table_digest(dpo.kept))
    # a set's source is the data file it was built from
    log_training_sets(report, quarantine_jsonl(quarantine), {"sft_train": sft.kept, "dpo_train": dpo.kept}, source=data_path)
    log_metadata({k: v for k, v in report.items() if isinstance(v, int)})
    return sft.kept, dpo.kept, quarantine, report
