"""The one line a step prints when it ends: what it did, with counts, and how long it took.

Everything else a step knows goes to MLflow and to the step's metadata; the console gets this
line, so that a run reads as a short list of stages above the summary. Cached steps do not
run and print nothing; the summary says how many there were.
"""

from __future__ import annotations

from datetime import UTC, datetime

from zenml import get_step_context


def stage_done(what: str) -> None:
    """Prints ``<step>: <what> (<seconds> s)``."""
    run = get_step_context().step_run
    start = run.start_time
    if start is not None and start.tzinfo is None:  # ZenML stores UTC without a zone
        start = start.replace(tzinfo=UTC)
    elapsed = (datetime.now(UTC) - start).total_seconds() if start else 0.0
    print(f"{run.name}: {what} ({elapsed:.1f} s)", flush=True)


def last_loss(history: list[dict[str, float]]) -> str:
    """The last logged training loss, for the stage line."""
    losses = [h["loss"] for h in history if "loss" in h]
    return f"{losses[-1]:.3f}" if losses else "n/a"
