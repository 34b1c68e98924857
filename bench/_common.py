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
    from empathy_distill.datasets import build_direct
    from empathy_distill.prompts import load_template
    from empathy_distill.training.student import build_tiny_student, chat_texts

    path = ROOT / "data" / "sample" / "dialogues.csv"
    table = ingest(path, DataConfig(path=str(path)), ValidationConfig()).table
    sets = build_direct(table, BootstrapConfig())
    train = table[table.split == "train"]
    texts = list(train.situation.unique()) + list(train.utterance.unique()) + list(train.response)
    student = StudentConfig(cache_dir=str(cache_dir), tiny=TinyStudentConfig(hidden_size=hidden, layers=layers))
    folder, _ = build_tiny_student(texts, chat_texts(sets.sft.to_dict("records"), load_template("student_system")), student)
    return table, sets, student, str(folder)
