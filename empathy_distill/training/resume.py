"""What every training stage does around its trainer: reuse a finished stage, resume from a checkpoint, save once."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from empathy_distill.training.checks import adapter_hash, require_change, separable_warning
from empathy_distill.training.console import step_clock

logger = logging.getLogger(__name__)


def stage_key(*parts: Any) -> str:
    """A short hash of everything that determines a stage's result (data, base model, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    warnings: list[str] = field(default_factory=list)
    """What the summary and MLflow should say about this stage (e.g. trivially separable DPO pairs)."""

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


def run_stage(name: str, work: Path, rows: int, base_model: str, build, score=None, announce=None) -> StageResult:
    """What every training stage does around its trainer: reuse a finished stage, resume from the last
    checkpoint (the step count continues), check that the adapter moved, save it once.

    Args:
        name: ``sft`` or ``dpo``.
        work: the stage's folder (``<output_dir>/<name>-<key>``): checkpoints/ and adapter/ live here.
        rows: training rows, for the result.
        build: ``build(checkpoint_dir) -> (trainer, recorder, tokenizer)``.
        score: ``score(trainer) -> metrics`` after training (DPO's reward accuracy), or None.
        announce: gets one line after the first steps: the stage's steps and the time per step (:func:`step_clock`).
    """
    adapter_dir = work / "adapter"
    if (done := StageResult.load(adapter_dir)) is not None:
        logger.info("%s %s already trained: reusing %s", name.upper(), work.name, adapter_dir)
        return done
    trainer, recorder, tokenizer = build(work / "checkpoints")
    if announce is not None and trainer.is_world_process_zero():
        trainer.add_callback(step_clock(name, announce))
    before = adapter_hash(trainer.model)
    ckpt, resumed = last_checkpoint(work / "checkpoints")
    if ckpt:
        logger.warning("%s: resuming from %s (step %d)", name.upper(), ckpt, resumed)
    try:
        trainer.train(resume_from_checkpoint=ckpt)
    finally:
        recorder.flush()  # what a failed stage logged before it failed still reaches MLflow
    after = adapter_hash(trainer.model)
    require_change(name.upper(), before, after)
    result = StageResult(
        name,
        str(adapter_dir),
        base_model,
        before,
        after,
        trainer.state.global_step,
        rows,
        recorder.history,
        resumed,
        eval_metrics=score(trainer) if score else {},
        processes=trainer.args.world_size,
    )
    if name == "dpo" and (warning := separable_warning(recorder.history, trainer.state.global_step)):
        logger.warning(warning)
        result.warnings.append(warning)
    if trainer.is_world_process_zero():  # one adapter, however many processes trained it
        trainer.model.save_pretrained(str(adapter_dir), selected_adapters=["default"])
        tokenizer.save_pretrained(str(adapter_dir))
        result.save()
    return result
