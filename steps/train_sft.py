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
from steps.console import last_loss, stage_done


@step(experiment_tracker=True, output_materializers={"sft_adapter": AdapterFolderMaterializer})
def train_sft(
    student_base: str, sft_train: pd.DataFrame, training: TrainingConfig, student: StudentConfig
) -> Annotated[Adapter, ArtifactConfig(name="sft_adapter", artifact_type=ArtifactType.MODEL)]:
    """Trains (or resumes, or reuses) the SFT adapter; fails loudly when no weight changed."""
    result = train_stage("sft", student_base, sft_train, training, student)
    log_training_stage(
        result,
        {
            "learning_rate": training.sft.learning_rate,
            "epochs": training.sft.epochs,
            "batch_size": training.sft.batch_size,
            "max_steps": training.sft.max_steps,
            "lora_r": training.lora.r,
            "lora_alpha": training.lora.alpha,
            "base_model": student_base,
        },
    )
    stage_done(
        f"{result.global_step} steps on {result.rows} rows"
        + (" (reused)" if result.reused else f", loss {last_loss(result.history)}")
    )
    return Adapter(
        path=result.adapter_dir,
        base_model=student_base,
        stage="sft",
        weights_hash=result.hash_after,
        global_step=result.global_step,
        rows=result.rows,
    )
