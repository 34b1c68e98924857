"""Pieces shared by SFT and DPO: LoRA config, metric recording, adapter hashes, the loss curve."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from empathy_distill.config import LoraSettings, StageSettings, TrainingConfig

logger = logging.getLogger(__name__)


class AdapterUnchanged(RuntimeError):
    """A training stage ended with the adapter weights exactly as they started."""


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


def quiet_console(trainer) -> None:
    """Keeps the trainer's per-step log dicts out of the console; every value still reaches MLflow.

    Without a terminal, transformers' ``PrinterCallback`` prints each dict (a hundred lines per
    stage); on a terminal, its progress bar writes them under itself. The bar stays on a terminal.
    A compact line goes to the ``empathy_distill`` logger (shown with ``-v``) every tenth of the run.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - transformers' signature
            pass

    class EveryTenth(PrinterCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - transformers' signature
            every = max(1, (state.max_steps or 1) // 10)
            if logs and "loss" in logs and (state.global_step % every == 0 or state.global_step == state.max_steps):
                logger.info(
                    "step %d/%d loss %.4g lr %.3g",
                    state.global_step,
                    state.max_steps,
                    float(logs["loss"]),
                    float(logs.get("learning_rate", 0.0)),
                )

    handler = trainer.callback_handler
    had_bar = any(isinstance(cb, ProgressCallback) for cb in handler.callbacks)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if had_bar:
        trainer.add_callback(BarOnly())
    trainer.add_callback(EveryTenth())


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


METRICS_FLUSH_SECONDS = 15.0
"""How often buffered training metrics are written to MLflow (and when the stage ends)."""


def metrics_recorder(prefix: str, flush_seconds: float = METRICS_FLUSH_SECONDS):
    """A ``TrainerCallback`` that keeps every logged value and mirrors it to the active MLflow run.

    Every logged step reaches MLflow, in batches: values are buffered and written with one
    ``log_batch`` call every ``flush_seconds`` and when training ends (``flush()`` also runs when a
    stage fails). A write per training step costs the step a database round trip; on the CPU
    benchmark that was an eighth of the training time (docs/performance.md).
    """
    from transformers import TrainerCallback

    class MetricsRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []
            self._pending: list = []
            self._last_flush = time.monotonic()

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - transformers' signature
            values = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
            if not values:
                return
            self.history.append({"step": state.global_step, **values})
            mlflow = sys.modules.get("mlflow")  # not imported means no run can be active: skip the heavy import
            if mlflow is None or mlflow.active_run() is None:
                return
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self._pending += [
                Metric(f"{prefix}.{k.replace('/', '.')}", v, now, state.global_step) for k, v in values.items()
            ]
            if time.monotonic() - self._last_flush >= flush_seconds:
                self.flush()

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' signature
            self.flush()

        def flush(self) -> None:
            """Writes the buffered values to the active MLflow run (at most 1000 per request)."""
            pending, self._pending = self._pending, []
            self._last_flush = time.monotonic()
            mlflow = sys.modules.get("mlflow")
            if not pending or mlflow is None or (run := mlflow.active_run()) is None:
                return
            try:
                client = mlflow.MlflowClient()
                for i in range(0, len(pending), 1000):
                    client.log_batch(run.info.run_id, metrics=pending[i : i + 1000])
            except Exception as exc:  # noqa: BLE001 - tracking must never stop training
                logger.warning("could not log %d %s metric values to MLflow: %s", len(pending), prefix, exc)

    return MetricsRecorder()


def adapter_hash(model, adapter: str = "default") -> str:
    """sha256 over the named adapter's LoRA tensors, in name order."""
    digest = hashlib.sha256()
    tensors = sorted((name, p) for name, p in model.named_parameters() if f".{adapter}." in name and "lora_" in name)
    if not tensors:
        raise ValueError(f"model has no LoRA tensors for adapter '{adapter}'")
    for name, param in tensors:
        digest.update(name.replace(f".{adapter}.", ".").encode())
        digest.update(param.detach().float().cpu().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def require_change(stage: str, before: str, after: str) -> None:
    if before == after:
        raise AdapterUnchanged(
            f"{stage}: training changed no adapter weight (hash {after[:19]}); check the learning rate, max_steps "
            "and that labels are not all masked"
        )


def smoothed(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start (the first point is itself)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def curve_panels(history: list[dict[str, float]], keys: tuple[str, ...] = ("loss",)) -> dict[str, list[tuple]]:
    """The panels a stage's plot shows: each logged key, then the learning rate; points as (step, value)."""
    panels = {k: [(h["step"], h[k]) for h in history if k in h] for k in (*keys, "learning_rate")}
    return {k: v for k, v in panels.items() if v}


def loss_curve_png(
    history: list[dict[str, float]], path: Path, title: str, keys: tuple[str, ...] = ("loss",)
) -> Path | None:
    """A PNG of the logged curves (loss, and for DPO reward accuracy and margin) and the learning rate: the raw
    values faint, an exponential moving average over them (from 10 points), so a long noisy run reads as a trend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = curve_panels(history, keys)
    if not series or not any(k != "learning_rate" for k in series):
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.2), squeeze=False)
    for ax, (key, points) in zip(axes[0], series.items()):
        steps, values = [p[0] for p in points], [p[1] for p in points]
        if key == "learning_rate" or len(points) < 10:
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, linewidth=1.5)
        else:
            ax.plot(steps, values, linewidth=0.8, alpha=0.35, label="logged")
            ax.plot(steps, smoothed(values), linewidth=1.8, label="smoothed (EMA 0.9)")
            ax.legend(fontsize=7)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def step_clock(name: str, announce, first_steps: int = 5):
    """A ``TrainerCallback`` that says once, after the first steps, how many steps the stage has, the time per
    step measured on them (model loading and data preparation excluded) and the time left."""
    import time

    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.started: float | None = None
            self.start_step = 0
            self.said = False

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' signature
            self.start_step = state.global_step

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' signature
            if self.started is None:
                self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' signature
            done = state.global_step - self.start_step
            total = state.max_steps
            if self.said or self.started is None or done < min(first_steps, max(total - self.start_step, 1)):
                return
            self.said = True
            per_step = (time.perf_counter() - self.started) / done
            epochs = args.num_train_epochs if args.max_steps <= 0 else None
            shape = (
                f"{total / epochs:.0f} per epoch x {epochs:g} epochs, " if epochs and float(epochs).is_integer() else ""
            )
            resumed = f", resumed at step {self.start_step}" if self.start_step else ""
            announce(
                f"{name.upper()}: {total:,} steps ({shape}batch {args.per_device_train_batch_size}{resumed}); "
                f"{per_step:.2f} s/step over the first {done}: ~{_duration(per_step * (total - state.global_step))} "
                "to go"
            )

    return StepClock()


def separable_warning(history: list[dict[str, float]], total_steps: int) -> str | None:
    """A warning when DPO's reward accuracy reaches 1.0 within the first tenth of the steps: the pairs are told
    apart at once (by length or style), so they teach the student little about empathy."""
    for h in history:
        if h.get("rewards/accuracies", 0.0) >= 1.0 and h.get("step", 0) <= max(1, total_steps // 10):
            return (
                f"DPO reward accuracy reached 1.0 at step {int(h['step'])} of {total_steps} (within the first tenth): "
                "the pairs are trivially separable and teach little; try pairs closer in quality (another method or "
                "strategy) or a lower beta"
            )
    return None


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
