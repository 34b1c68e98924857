"""LoRA SFT with TRL's ``SFTTrainer``: conversational prompt/completion rows, loss on the assistant turn only.

Rows are tokenized here, not by TRL: the prompt exactly as generation renders it (see
:mod:`empathy_distill.training.chat`), then the reply and the family's end-of-turn tokens,
so the student learns to end its turn the way generation stops it.

Checkpoints go to ``training.output_dir/sft-<key>``, where the key hashes the data,
the base model (its path and its content fingerprint) and the settings: a rerun after a crash resumes from the last
checkpoint (the step count continues), and a finished stage is reused as is.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from empathy_distill.config import StudentConfig, TrainingConfig
from empathy_distill.data.training_sets import to_conversational
from empathy_distill.training.arguments import lora_config, make_trainer, trainer_args
from empathy_distill.training.chat import ChatFormat
from empathy_distill.training.fingerprint import model_fingerprint
from empathy_distill.training.metrics import metrics_recorder
from empathy_distill.training.resume import StageResult, run_stage, stage_key
from empathy_distill.training.student import load_student


def sft_examples(rows: pd.DataFrame, tokenizer, fmt: ChatFormat) -> list[dict[str, list[int]]]:
    """Tokenized rows: the prompt as the template renders it for generation, then the reply and exactly the
    template's end-of-turn tokens (the only tokens with a loss)."""
    return [
        fmt.encode_sft(tokenizer, row["prompt"], row["completion"][0]["content"]) for row in to_conversational(rows)
    ]


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

    tokenizer, model, fmt = load_student(base_model, student)
    dataset = Dataset.from_list(sft_examples(rows, tokenizer, fmt))
    # completion_only_loss: prompt tokens get label -100, so the student learns replies, not the dialogues
    args = SFTConfig(
        **trainer_args(cfg.sft, cfg, output_dir),
        completion_only_loss=True,
        # batches of similar lengths pad less; the masks (and so the loss) are those of random batches
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
    )
    recorder = metrics_recorder("sft")
    callbacks = [recorder, *(extra_callbacks or [])]
    trainer = make_trainer(SFTTrainer, model, args, dataset, tokenizer, lora_config(cfg.lora), callbacks)
    return trainer, recorder, tokenizer


def fit_sft(
    base_model: str,
    rows: pd.DataFrame,
    cfg: TrainingConfig,
    student: StudentConfig,
    extra_callbacks: list | None = None,
    announce=None,
) -> StageResult:
    """Trains a LoRA adapter on SFT rows; raises :class:`AdapterUnchanged` when nothing moved.

    ``extra_callbacks`` are added to the trainer (tests use one to interrupt a run).
    """
    key = stage_key(
        "sft",
        base_model,
        model_fingerprint(base_model),
        student.chat_template,
        pd.util.hash_pandas_object(rows, index=False).sum(),
        cfg.sft.model_dump(),
        cfg.lora.model_dump(),
        cfg.seed,
        *(["group_by_length"] if cfg.group_by_length else []),
        *([cfg.num_processes] if cfg.num_processes > 1 else []),
    )
    return run_stage(
        "sft",
        Path(cfg.output_dir) / f"sft-{key}",
        len(rows),
        base_model,
        lambda checkpoints: build_sft_trainer(base_model, rows, cfg, student, checkpoints, extra_callbacks),
        announce=announce,
    )
