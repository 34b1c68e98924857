"""LoRA SFT with TRL's ``SFTTrainer``: conversational prompt/completion rows, loss on the assistant turn only.

Checkpoints go to ``training.output_dir/sft-<key>``, where the key hashes the data,
the base model and the settings: a rerun after a crash resumes from the last
checkpoint (the step count continues), and a finished stage is reused as is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from empathy_distill.config import StudentConfig, TrainingConfig
from empathy_distill.datasets import to_conversational
from empathy_distill.training.common import adapter_hash, lora_config, metrics_recorder, quiet_console, require_change, stage_key, trainer_args
from empathy_distill.training.student import load_student

logger = logging.getLogger(__name__)


@dataclass
class StageResult:
    """What a training stage produced."""

    stage: str
    adapter_dir: str
    base_model: str
    hash_before: str
    hash_after: str
    global_step: int
    rows: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_step: int = 0
    reused: bool = False
    eval_metrics: dict[str, float] = field(default_factory=dict)
    processes: int = 1
    """How many processes trained it together (DDP world size)."""

    def save(self) -> None:
        (Path(self.adapter_dir) / "train_result.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, adapter_dir: Path) -> StageResult | None:
        path = Path(adapter_dir) / "train_result.json"
        if not path.exists():
            return None
        return cls(**{**json.loads(path.read_text()), "reused": True})


def last_checkpoint(folder: Path) -> tuple[str | None, int]:
    from transformers.trainer_utils import get_last_checkpoint

    if not folder.is_dir():
        return None, 0
    ckpt = get_last_checkpoint(str(folder))
    return (ckpt, int(ckpt.rsplit("-", 1)[-1])) if ckpt else (None, 0)


def build_sft_trainer(base_model: str, rows: pd.DataFrame, cfg: TrainingConfig, student: StudentConfig, output_dir: Path, extra_callbacks: list | None = None):
    """The SFTTrainer (LoRA, loss on the assistant turn only), its metrics recorder and the tokenizer."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer, model = load_student(base_model, student)
    dataset = Dataset.from_list(to_conversational(rows))
    # completion_only_loss: prompt tokens get label -100, so the student learns replies, not the dialogues
    args = SFTConfig(**trainer_args(cfg.sft, cfg, output_dir), completion_only_loss=True)
    recorder = metrics_recorder("sft")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora_config(cfg.lora), callbacks=[recorder, *(extra_callbacks or [])])
    quiet_console(trainer)
    return trainer, recorder, tokenizer


def train_sft(
    base_model: str, rows: pd.DataFrame, cfg: TrainingConfig, student: StudentConfig, data_hash: str = "", extra_callbacks: list | None = None
) -> StageResult:
    """Trains a LoRA adapter on SFT rows; raises :class:`AdapterUnchanged` when nothing moved.

    ``extra_callbacks`` are added to the trainer (tests use one to interrupt a run).
    """
    key = stage_key("sft", base_model, data_hash or pd.util.hash_pandas_object(rows, index=False).sum(), cfg.sft.model_dump(), cfg.lora.model_dump(), cfg.seed,
                    *([cfg.num_processes] if cfg.num_processes > 1 else []))
    work = Path(cfg.output_dir) / f"sft-{key}"
    adapter_dir = work / "adapter"
    if (done := StageResult.load(adapter_dir)) is not None:
        logger.info("SFT %s already trained: reusing %s", key, adapter_dir)
        return done
    trainer, recorder, tokenizer = build_sft_trainer(base_model, rows, cfg, student, work / "checkpoints", extra_callbacks)
    before = adapter_hash(trainer.model)
    ckpt, resumed = last_checkpoint(work / "checkpoints")
    if ckpt:
        logger.warning("SFT: resuming from %s (step %d)", ckpt, resumed)
    trainer.train(resume_from_checkpoint=ckpt)
    after = adapter_hash(trainer.model)
    require_change("SFT", before, after)
    result = StageResult("sft", str(adapter_dir), base_model, before, after, trainer.state.global_step, len(rows), recorder.history, resumed,
                         processes=trainer.args.world_size)
    if trainer.is_world_process_zero():  # one adapter, however many processes trained it
        trainer.model.save_pretrained(str(adapter_dir))
        tokenizer.save_pretrained(str(adapter_dir))
        result.save()
    return result
