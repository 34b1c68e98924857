"""Training metrics into MLflow: every logged value kept, buffered and written in batches to the active run."""

from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger(__name__)

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
