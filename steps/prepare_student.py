"""Step: the student's base model: the offline tiny student (built and cached) or a configured model."""

from typing import Annotated, Any

import mlflow
import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import StudentConfig
from empathy_distill.prompts import STUDENT_SYSTEM, load_template
from empathy_distill.training.student import build_tiny_student, chat_texts


@step(experiment_tracker=True)
def prepare_student(dialogues: pd.DataFrame, sft_train: pd.DataFrame, student: StudentConfig) -> Annotated[str, "student_base"]:
    """Returns a model folder or hub id; ``tiny`` is trained on this data's text (no download)."""
    if student.model != "tiny":
        mlflow.log_param("student.model", student.model)
        return student.model
    train = dialogues[dialogues["split"] == "train"]
    texts = list(train["situation"].unique()) + list(train["utterance"].unique()) + list(train["response"])
    rows = sft_train.to_dict(orient="records") or [{"user": u, "response": r} for u, r in zip(train["utterance"], train["response"])]
    folder, info = build_tiny_student(texts, chat_texts(rows, load_template(STUDENT_SYSTEM)), student)
    info_flat: dict[str, Any] = {f"student.{k}": v for k, v in info.items() if v is not None}
    mlflow.log_params({k: v for k, v in info_flat.items() if k in ("student.model", "student.vocab_size", "student.parameters", "student.key")})
    mlflow.log_metrics({k: float(v) for k, v in info_flat.items() if k in ("student.pretrain_loss_last", "student.build_seconds")})
    log_metadata({k: v for k, v in info.items() if isinstance(v, (int, float, str))})
    return str(folder.resolve())
