"""Runs never lie about their state: a run whose process died (``kill -9``, a lost machine) is marked failed.

A process that launches a pipeline run takes a lease first: a small file beside the ZenML store
naming the run, the host and the process (pid and its start time, so a reused pid is not taken
for the same process). The lease goes when the launch returns, however it returns. Whatever
starts a run on that store, or runs ``lineage``, first reaps the leases of this host whose
process is gone: the ZenML run and its unfinished steps are marked failed, the MLflow run named
after it is terminated as FAILED, each with the reason, and the lease is removed. A run launched
on another host is left to that host (its process cannot be seen from here).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

REASON_TAG = "empathy.failure_reason"


def lease_dir() -> Path:
    from zenml.config.global_config import GlobalConfiguration

    return Path(GlobalConfiguration().config_directory) / "empathy-leases"


def _started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@contextmanager
def leased(run_name: str) -> Iterator[Path]:
    """Holds a lease on ``run_name`` while the block runs."""
    folder = lease_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_name}.json"
    record = {
        "run_name": run_name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_started": _started(os.getpid()),
        "taken": time.time(),
    }
    path.write_text(json.dumps(record))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _alive(record: dict) -> bool:
    started = _started(int(record["pid"]))
    return started is not None and abs(started - float(record.get("process_started") or 0)) < 1.0


def reap(tracking_uri: str | None) -> list[str]:
    """Marks failed every run of this host whose launching process is gone; returns one line per run."""
    folder = lease_dir()
    if not folder.is_dir():
        return []
    lines = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("host") != socket.gethostname() or _alive(record):
            continue
        reason = (
            f"its process (pid {record['pid']} on {record['host']}) ended without finishing the run "
            "(killed, or the machine went down); marked failed by the next command on this store"
        )
        done = [mark_zenml_failed(record["run_name"], reason)]
        if tracking_uri:
            done.append(mark_mlflow_failed(tracking_uri, record["run_name"], reason))
        path.unlink(missing_ok=True)
        marked = [d for d in done if d]
        if marked:
            lines.append(f"run {record['run_name']}: marked failed in {' and '.join(marked)}: {reason}")
    for line in lines:
        logger.warning(line)
    return lines


def mark_zenml_failed(run_name: str, reason: str) -> str | None:
    from datetime import UTC, datetime

    from zenml.client import Client
    from zenml.enums import ExecutionStatus
    from zenml.models import PipelineRunUpdate, StepRunUpdate

    client = Client()
    try:
        run = client.get_pipeline_run(run_name)
    except KeyError:
        return None
    if run.status.is_finished:
        return None
    for step in run.steps.values():
        if not step.status.is_finished:
            client.zen_store.update_run_step(
                step.id, StepRunUpdate(status=ExecutionStatus.FAILED, end_time=datetime.now(UTC))
            )
    client.zen_store.update_run(run.id, PipelineRunUpdate(status=ExecutionStatus.FAILED, status_reason=reason[:250]))
    return "ZenML"


def mark_mlflow_failed(tracking_uri: str, run_name: str, reason: str) -> str | None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    runs = client.search_runs(experiments, filter_string=f"attributes.run_name = '{run_name}'")
    marked = None
    for run in runs:
        if run.info.status in ("RUNNING", "SCHEDULED"):
            client.set_tag(run.info.run_id, REASON_TAG, reason)
            client.set_terminated(run.info.run_id, "FAILED")
            marked = "MLflow"
    return marked
