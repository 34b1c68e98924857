"""Shared set-up for the training and generation benchmarks: the sample data and a tiny student."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sample_sets():
    """(table, training sets) of data/sample, as the demo builds them (``direct``)."""
    from empathy_distill.config import BootstrapConfig, DataConfig, ValidationConfig
    from empathy_distill.data.ingest import ingest
    from empathy_distill.stages import bootstrap_training_sets

    path = ROOT / "data" / "sample" / "dialogues.csv"
    table = ingest(path, DataConfig(path=str(path)), ValidationConfig()).table
    return table, bootstrap_training_sets(table, BootstrapConfig())


def sample_world(cache_dir: Path, hidden: int = 64, layers: int = 2):
    """(table, training sets, student config, base model folder) built from data/sample."""
    from empathy_distill.config import StudentConfig, TinyStudentConfig
    from empathy_distill.stages import student_stage

    table, sets = sample_sets()
    student = StudentConfig(cache_dir=str(cache_dir), tiny=TinyStudentConfig(hidden_size=hidden, layers=layers))
    base, _ = student_stage(table, [sets.sft, sets.dpo], student)
    return table, sets, student, base


def start_loopback(*args: str):
    """The loopback OpenAI-compatible server in its own process (the second core): (process, base URL)."""
    import os
    import re
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "empathy_distill.testing.loopback", *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line = proc.stdout.readline()
    return proc, re.search(r"(http://\S+)", line).group(1)


def throwaway_stack(prefix: str) -> Path:
    """A fresh work folder with its own ZenML store and local stack (MLflow tracker), quiet and offline."""
    import os
    import tempfile

    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        ZENML_CONFIG_PATH=str(work / "zen"),
        ZENML_ANALYTICS_OPT_IN="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        HF_HUB_OFFLINE="1",
        ZENML_LOGGING_VERBOSITY="WARN",
    )
    from app.stack import ensure_local_stack

    ensure_local_stack(repo_root=work)
    return work
