"""What SFT and DPO hand their TRL trainer: LoRA settings, precision, training arguments, the trainer itself."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from empathy_distill.config import LoraSettings, StageSettings, TrainingConfig
from empathy_distill.training.console import quiet_console


def lora_config(settings: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
    )


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX tiles or AVX512-BF16), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def use_bf16(cfg: TrainingConfig) -> bool:
    """bfloat16 autocast for training (float32 weights): ``training.precision``, auto by the hardware."""
    import torch

    if cfg.precision == "auto":
        if torch.cuda.is_available():
            return bool(torch.cuda.is_bf16_supported())
        return cpu_has_bf16()
    return cfg.precision == "bf16-autocast"


def trainer_args(stage: StageSettings, cfg: TrainingConfig, output_dir: Path) -> dict[str, Any]:
    """Keyword arguments common to ``SFTConfig`` and ``DPOConfig``."""
    return {
        "output_dir": str(output_dir),
        "learning_rate": stage.learning_rate,
        "num_train_epochs": stage.epochs,
        "per_device_train_batch_size": stage.batch_size,
        "gradient_accumulation_steps": stage.grad_accum,
        "max_steps": stage.max_steps,
        "max_length": stage.max_length,
        "warmup_steps": stage.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        "logging_steps": stage.logging_steps,
        "save_steps": stage.save_steps,
        "save_total_limit": 2,
        "report_to": "none",  # metrics go to MLflow through MetricsRecorder, into the pipeline's run
        "bf16": use_bf16(cfg),
        "use_cpu": not _cuda(),  # without it transformers refuses bf16 on a CPU ("doesn't support bf16/gpu")
        _checkpointing_key(): cfg.gradient_checkpointing,
        "seed": cfg.seed,
        "disable_tqdm": not sys.stderr.isatty(),  # progress bars on a terminal, none in CI logs
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": _cuda(),  # pinning without a GPU only warns, once per epoch
    }


@functools.cache
def _checkpointing_key() -> str:
    """``activation_checkpointing`` where transformers has it (5.x: the old name warns), else the old name."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def make_trainer(trainer_class, model, args, dataset, tokenizer, peft_config, callbacks: list):
    """A TRL trainer (``SFTTrainer`` or ``DPOTrainer``) over conversational rows, with the quiet console."""
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    quiet_console(trainer)
    return trainer
