"""Step: the scheduled retrain's gate (never cached): ``distill`` runs only when an input differs from the
champion's."""

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import yaml
from zenml import log_metadata, step
from zenml.client import Client

from empathy_distill.config import DistillConfig
from empathy_distill.registry.retrain import retrain_decision

logger = logging.getLogger(__name__)


def _cli() -> str:
    """The ``empathy-distill`` command of this environment (beside its Python, else on PATH)."""
    beside = Path(sys.executable).parent / "empathy-distill"
    found = str(beside) if beside.exists() else shutil.which("empathy-distill")
    if not found:
        raise RuntimeError("retrain_gate: the empathy-distill command is not installed in this environment")
    return found


@step(enable_cache=False)
def retrain_gate(config: DistillConfig, force: bool = False) -> Annotated[list[str], "retrain_decision"]:
    """What ``empathy-distill retrain`` does, at the time the schedule fires.

    The data fingerprint, the input hashes and the champion are read when this step runs (a
    recurring run of ``distill`` itself would carry the values of the day it was scheduled). When
    something changed, ``empathy-distill distill`` is run with this config (no schedule: this is the
    scheduled call) on the same ZenML store and stack, and this step returns its summary once it is done.
    The step starts the command, it does not import the application layer: a step cannot depend on
    the layer that launches pipelines.
    """
    tracker = Client().active_stack.experiment_tracker
    if tracker is None:
        raise RuntimeError(f"retrain_gate: the stack '{Client().active_stack_model.name}' has no experiment tracker")
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or tracker.get_tracking_uri()
    run, line = retrain_decision(config, tracking_uri, force)
    logger.info(line)
    lines = [line]
    if run:
        once = config.model_copy(update={"schedule": config.schedule.model_copy(update={"cron": None})})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{config.name}.yaml"
            path.write_text(yaml.safe_dump(once.model_dump(mode="json"), sort_keys=False))
            proc = subprocess.run([_cli(), "distill", "--config", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
            raise RuntimeError(f"retrain_gate: distill exited {proc.returncode}: " + " | ".join(tail))
        lines += proc.stdout.rstrip().splitlines()
        for out in lines[1:]:
            logger.info(out)
    log_metadata({"decision": line})
    return lines
