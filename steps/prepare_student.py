"""Step: the student's base model: the offline tiny student (built and cached) or a configured model."""

from typing import Annotated

import mlflow
import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import StudentConfig
from empathy_distill.stages import student_stage
from steps.console import stage_done

PARAMS = ("model", "vocab_size", "parameters", "key", "architecture")
METRICS = ("pretrain_loss_last", "build_seconds", "warmup_chats", "warmup_units_dropped")


@step(experiment_tracker=True)
def prepare_student(
    dialogues: pd.DataFrame, sft_train: pd.DataFrame, dpo_train: pd.DataFrame, student: StudentConfig
) -> Annotated[str, "student_base"]:
    """Returns a model folder or hub id; ``tiny`` is warmed up on train situations and speaker turns only (no
    download)."""
    path, info = student_stage(dialogues, [sft_train, dpo_train], student)
    mlflow.log_params({f"student.{k}": info[k] for k in PARAMS if info.get(k) is not None})
    mlflow.log_metrics({f"student.{k}": float(info[k]) for k in METRICS if info.get(k) is not None})
    if info.get("source") == "gguf":
        mlflow.log_params({f"student.gguf.{k}": v for k, v in info["gguf"].items() if k != "path" and v is not None})
        mlflow.log_params({f"student.converter.{k}": v for k, v in info.get("converter", {}).items()})
    log_metadata({k: v for k, v in info.items() if isinstance(v, (int, float, str))})
    if info.get("source") == "gguf":
        g = info["gguf"]
        origin = f"{g['package']}=={g['package_version']} " if g.get("package") else ""
        # the run's preflight check usually builds the folder before the pipeline starts: say when it was built
        built = f"dequantised once in {info.get('build_seconds', 0):.0f} s" + (
            ", the cache reused" if info.get("reused") else ""
        )
        stage_done(
            f"student {student.model}: {info.get('architecture')}, {info.get('parameters', 0) / 1e6:.1f}M parameters, "
            f"from {origin}{g['file']} sha256 {g['sha256'][:12]} ({built})"
        )
    elif student.model != "tiny":
        stage_done(f"student {student.model}")
    else:
        built = (
            "reused"
            if info.get("reused")
            else f"built, pretrain loss {info.get('pretrain_loss_last', float('nan')):.2f}"
        )
        stage_done(
            f"tiny student ({info.get('parameters', 0) / 1e6:.2f}M parameters, vocab {info.get('vocab_size')}) {built}"
        )
    return path
