"""The pipeline bench/train_overhead.py times: the training sets as artifacts, then the real training steps.

Imported only after the benchmark has pointed ZENML_CONFIG_PATH at its throw-away store.
"""

from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import pipeline, step

from empathy_distill.config import StudentConfig, TrainingConfig
from materializers import DialogueTableMaterializer
from steps import train_dpo, train_sft


@step(output_materializers={"sft_train": DialogueTableMaterializer, "dpo_train": DialogueTableMaterializer})
def saved_sets(sets_dir: str) -> tuple[Annotated[pd.DataFrame, "sft_train"], Annotated[pd.DataFrame, "dpo_train"]]:
    """The sets as validate_training_sets leaves them: artifacts that the training steps read back."""
    return pd.read_parquet(Path(sets_dir) / "sft.parquet"), pd.read_parquet(Path(sets_dir) / "dpo.parquet")


@pipeline(enable_cache=False)
def training_steps(base: str, sets_dir: str, training: TrainingConfig, student: StudentConfig) -> None:
    sft_train, dpo_train = saved_sets(sets_dir=sets_dir)
    sft = train_sft(base, sft_train, training=training, student=student)
    train_dpo(base, dpo_train, training=training, student=student, sft_adapter=sft)


@pipeline(enable_cache=False)
def sft_step(base: str, sets_dir: str, training: TrainingConfig, student: StudentConfig) -> None:
    """The SFT step alone (bench/train_real.py), its rows read back from an artifact as in the real pipeline."""
    sft_train, _ = saved_sets(sets_dir=sets_dir)
    train_sft(base, sft_train, training=training, student=student)
