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


def stage_note(what: str) -> None:
    """Prints ``<step>: <what>`` while the step runs (e.g. the teacher's plan before its first request)."""
    print(f"{get_step_context().step_run.name}: {what}", flush=True)


def trained(result) -> str:
    """A training stage's line: steps, rows, the last loss (or that it was reused)."""
    if result.reused:
        return f"{result.global_step} steps on {result.rows} rows (reused)"
    losses = [h["loss"] for h in result.history if "loss" in h]
    line = (
        f"{result.global_step} steps on {result.rows} rows, loss {losses[-1]:.3f}"
        if losses
        else f"{result.global_step} steps"
    )
    return line + "".join(f"; WARNING: {w}" for w in result.warnings)
