"""Step: the student's base model: the offline tiny student (built and cached) or a configured model."""

from typing import Annotated, Any

import mlflow
import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import StudentConfig
from empathy_distill.training.student import prepare_tiny_student


@step(experiment_tracker=True)
def prepare_student(dialogues: pd.DataFrame, sft_train: pd.DataFrame, dpo_train: pd.DataFrame, student: StudentConfig) -> Annotated[str, "student_base"]:
    """Returns a model folder or hub id; ``tiny`` is warmed up on train situations and speaker turns only (no download)."""
    if student.model != "tiny":
        mlflow.log_param("student.model", student.model)
        return student.model
    folder, info = prepare_tiny_student(dialogues, [sft_train, dpo_train], student)
    info_flat: dict[str, Any] = {f"student.{k}": v for k, v in info.items() if v is not None}
    mlflow.log_params({k: v for k, v in info_flat.items() if k in ("student.model", "student.vocab_size", "student.parameters", "student.key")})
    mlflow.log_metrics({k: float(v) for k, v in info_flat.items()
                        if k in ("student.pretrain_loss_last", "student.build_seconds", "student.warmup_chats", "student.warmup_units_dropped")})
    log_metadata({k: v for k, v in info.items() if isinstance(v, (int, float, str))})
    return str(folder.resolve())
