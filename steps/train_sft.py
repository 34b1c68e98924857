"""Step: LoRA SFT of the student on the validated SFT rows."""

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


@step(experiment_tracker=True, output_materializers={"sft_adapter": AdapterFolderMaterializer})
def train_sft(
    student_base: str, sft_train: pd.DataFrame, training: TrainingConfig, student: StudentConfig
) -> Annotated[Adapter, ArtifactConfig(name="sft_adapter", artifact_type=ArtifactType.MODEL)]:
    """Trains (or resumes, or reuses) the SFT adapter; fails loudly when no weight changed."""
    result = train_stage("sft", student_base, sft_train, training, student, announce=stage_note)
    log_training_stage(
        result,
        {
            **training.sft.model_dump(include={"learning_rate", "epochs", "batch_size", "max_steps"}),
            "lora_r": training.lora.r,
            "lora_alpha": training.lora.alpha,
            "base_model": student_base,
        },
    )
    stage_done(trained(result))
    return Adapter.from_stage(result)
