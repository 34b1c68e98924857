"""LoRA SFT with TRL's ``SFTTrainer``: conversational prompt/completion rows, loss on the assistant turn only.

Checkpoints go to ``training.output_dir/sft-<key>``, where the key hashes the data,
the base model and the settings: a rerun after a crash resumes from the last
checkpoint (the step count continues), and a finished stage is reused as is.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from empathy_distill.config import StudentConfig, TrainingConfig
from empathy_distill.data.training_sets import to_conversational
from empathy_distill.training import common
from empathy_distill.training.student import load_student


def build_sft_trainer(
    base_model: str,
    rows: pd.DataFrame,
    cfg: TrainingConfig,
    student: StudentConfig,
    output_dir: Path,
    extra_callbacks: list | None = None,
):
    """The SFTTrainer (LoRA, loss on the assistant turn only), its metrics recorder and the tokenizer."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer, model = load_student(base_model, student)
    dataset = Dataset.from_list(to_conversational(rows))
    # completion_only_loss: prompt tokens get label -100, so the student learns replies, not the dialogues
    args = SFTConfig(**common.trainer_args(cfg.sft, cfg, output_dir), completion_only_loss=True)
    recorder = common.metrics_recorder("sft")
    callbacks = [recorder, *(extra_callbacks or [])]
    trainer = common.make_trainer(SFTTrainer, model, args, dataset, tokenizer, common.lora_config(cfg.lora), callbacks)
    return trainer, recorder, tokenizer


def train_sft(
    base_model: str,
    rows: pd.DataFrame,
    cfg: TrainingConfig,
    student: StudentConfig,
    extra_callbacks: list | None = None,
) -> common.StageResult:
    """Trains a LoRA adapter on SFT rows; raises :class:`AdapterUnchanged` when nothing moved.

    ``extra_callbacks`` are added to the trainer (tests use one to interrupt a run).
    """
    key = common.stage_key(
        "sft",
        base_model,
        pd.util.hash_pandas_object(rows, index=False).sum(),
        cfg.sft.model_dump(),
        cfg.lora.model_dump(),
        cfg.seed,
        *([cfg.num_processes] if cfg.num_processes > 1 else []),
    )
    return common.run_stage(
        "sft",
        Path(cfg.output_dir) / f"sft-{key}",
        len(rows),
        base_model,
        lambda checkpoints: build_sft_trainer(base_model, rows, cfg, student, checkpoints, extra_callbacks),
    )
