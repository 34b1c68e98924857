"""Step: DPO from the SFT adapter (or a fresh adapter for a DPO-only run)."""

from typing import Annotated

import pandas as pd
from zenml import ArtifactConfig, step
from zenml.enums import ArtifactType

from empathy_distill.config import StudentConfig, TrainingConfig
from empathy_distill.tracking import log_training_stage
from empathy_distill.training.adapter import Adapter
from empathy_distill.training.launch import train_stage
from materializers import AdapterFolderMaterializer
from steps.console import stage_done, stage_note, trained


@step(experiment_tracker=True, output_materializers={"dpo_adapter": AdapterFolderMaterializer})
def train_dpo(
    student_base: str,
    dpo_train: pd.DataFrame,
    training: TrainingConfig,
    student: StudentConfig,
    sft_adapter: Adapter | None = None,
) -> Annotated[Adapter, ArtifactConfig(name="dpo_adapter", artifact_type=ArtifactType.MODEL)]:
    """beta and loss from config; the reference is the frozen SFT adapter (see empathy_distill/training/dpo.py)."""
    sft_path = sft_adapter.path if sft_adapter else None
    result = train_stage("dpo", student_base, dpo_train, training, student, sft_path, announce=stage_note)
    log_training_stage(
        result,
        {
            **training.dpo.model_dump(include={"learning_rate", "epochs", "batch_size", "max_steps"}),
            "beta": training.beta,
            "loss_type": training.loss_type,
            "reference": "sft_adapter" if sft_adapter else "base_model",
        },
        curve_keys=("loss", "rewards/accuracies", "rewards/margins"),
    )
    stage_done(trained(result))
    return Adapter.from_stage(result)
