"""What a training stage says on the console: a bar on a terminal, a line every tenth of the run, the step clock."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


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


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def step_clock(name: str, announce, first_steps: int = 5):
    """A ``TrainerCallback`` that says once, after the first steps, how many steps the stage has, the time per
    step measured on them (model loading and data preparation excluded) and the time left."""
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
