"""Step: the student's base model: the offline tiny student (built and cached) or a configured model."""

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import StudentConfig
from empathy_distill.stages import student_stage, student_summary
from empathy_distill.tracking import log_student
from steps.console import stage_done


@step(experiment_tracker=True)
def prepare_student(
    dialogues: pd.DataFrame, sft_train: pd.DataFrame, dpo_train: pd.DataFrame, student: StudentConfig
) -> Annotated[str, "student_base"]:
    """Returns a model folder or hub id; ``tiny`` is warmed up on train situations and speaker turns only (no
    download)."""
    path, info = student_stage(dialogues, [sft_train, dpo_train], student)
    log_student(info)
    log_metadata({k: v for k, v in info.items() if isinstance(v, (int, float, str))})
    stage_done(student_summary(student.model, info))
    return path
