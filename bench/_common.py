"""Shared set-up for the training and generation benchmarks: the sample data and a tiny student."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sample_world(cache_dir: Path, hidden: int = 64, layers: int = 2):
    """(table, training sets, student config, base model folder) built from data/sample."""
    from empathy_distill.config import BootstrapConfig, DataConfig, StudentConfig, TinyStudentConfig, ValidationConfig
    from empathy_distill.data.ingest import ingest
    from empathy_distill.stages import build_training_sets, student_stage

    path = ROOT / "data" / "sample" / "dialogues.csv"
    table = ingest(path, DataConfig(path=str(path)), ValidationConfig()).table
    sets = build_training_sets(table, BootstrapConfig())
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
