"""DPO with TRL's ``DPOTrainer`` (beta 0.1, sigmoid loss), starting from the SFT adapter.

How the reference works: the SFT adapter is loaded as a *trainable* PEFT model and no
``ref_model`` is passed. TRL then copies that adapter into a second, frozen adapter
named ``ref`` and computes reference log-probabilities with it, so the reference is
the frozen SFT adapter (not the bare base model) and only one copy of the base
weights is in memory. For a DPO-only run (``training.stages: dpo``) a fresh LoRA
adapter is trained and the reference is the base model with adapters disabled.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from empathy_distill.config import StudentConfig, TrainingConfig
from empathy_distill.data.training_sets import to_conversational
from empathy_distill.training import common
from empathy_distill.training.student import load_student


def build_dpo_trainer(
    base_model: str,
    pairs: pd.DataFrame,
    cfg: TrainingConfig,
    student: StudentConfig,
    sft_adapter: str | None,
    output_dir: Path,
):
    """The DPOTrainer, its metrics recorder and the dataset (also used to score reward accuracy)."""
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    tokenizer, model = load_student(base_model, student)
    peft_config = None
    if sft_adapter:
        model = PeftModel.from_pretrained(model, sft_adapter, is_trainable=True)
    else:
        peft_config = common.lora_config(cfg.lora)
    dataset = Dataset.from_list(to_conversational(pairs))
    args = DPOConfig(**common.trainer_args(cfg.dpo, cfg, output_dir), beta=cfg.beta, loss_type=[cfg.loss_type])
    recorder = common.metrics_recorder("dpo")
    trainer = common.make_trainer(DPOTrainer, model, args, dataset, tokenizer, peft_config, [recorder])
    return trainer, recorder, dataset, tokenizer


def train_dpo(
    base_model: str, pairs: pd.DataFrame, cfg: TrainingConfig, student: StudentConfig, sft_adapter: str | None = None
) -> common.StageResult:
    """Trains the DPO adapter (from the SFT adapter when given); raises :class:`AdapterUnchanged` when nothing moved."""
    key = common.stage_key(
        "dpo",
        base_model,
        sft_adapter,
        pd.util.hash_pandas_object(pairs, index=False).sum(),
        cfg.dpo.model_dump(),
        cfg.lora.model_dump(),
        cfg.beta,
        cfg.loss_type,
        cfg.seed,
        *([cfg.num_processes] if cfg.num_processes > 1 else []),
    )
    built = {}

    def build(checkpoints: Path):
        trainer, recorder, built["dataset"], tokenizer = build_dpo_trainer(
            base_model, pairs, cfg, student, sft_adapter, checkpoints
        )
        return trainer, recorder, tokenizer

    def score(
        trainer,
    ) -> dict[
        str, float
    ]:  # implicit reward accuracy and margin on (up to 64 of) the training pairs, against the reference
        dataset = built["dataset"]
        scored = trainer.evaluate(eval_dataset=dataset.select(range(min(len(dataset), 64))))
        return {k.removeprefix("eval_"): float(v) for k, v in scored.items() if k.startswith("eval_rewards/")}

    return common.run_stage("dpo", Path(cfg.output_dir) / f"dpo-{key}", len(pairs), base_model, build, score)
