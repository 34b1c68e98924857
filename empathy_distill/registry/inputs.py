"""What a run is made of, hashed per part: the retrain gate compares these with the champion's.

A part's hash changes exactly when something that can change the trained adapter or its
evaluation changes: the data bytes, any prompt template (teacher, student system, judge),
the teacher, the bootstrap, student, training, generation and evaluation settings.
Paths of caches, concurrency, timeouts and key variable names are left out: they change
how a run goes, not what it produces.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from empathy_distill.config import DistillConfig

PARTS = ("data", "prompts", "teacher", "bootstrap", "student", "training", "generation", "evaluation")
_RUN_ONLY = {
    "teacher": {
        "cache_path",
        "concurrency",
        "timeout_s",
        "max_retries",
        "backoff_base_s",
        "backoff_max_s",
        "api_key_env",
        "batch_poll_s",
        "batch_timeout_s",
    },
    "student": {"cache_dir"},
    "training": {"output_dir", "gradient_checkpointing"},
    "evaluation": {"cache_dir", "on_judge_error"},
    "generation": {"batch_size"},
}


def _digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def templates_hash() -> str:
    """Every prompt template shipped (names and texts)."""
    folder = resources.files("empathy_distill.prompts")
    return _digest(
        {
            p.name: p.read_text(encoding="utf-8")
            for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".txt")
        }
    )


def data_part(data_fingerprint: str, data: dict[str, Any], validation: dict[str, Any]) -> str:
    """The ``data`` part: the file's bytes and how they are read, split and validated (``data`` and ``validation``
    as dumped config sections)."""
    return _digest(
        {"bytes": data_fingerprint, "format": data["format"], "split": data["split"], "validation": validation}
    )


def input_hashes(config: DistillConfig, data_fingerprint: str) -> dict[str, str]:
    """One hash per part of :data:`PARTS`, plus ``all`` over them."""
    dumped = config.model_dump()
    parts = {"data": data_part(data_fingerprint, dumped["data"], dumped["validation"]), "prompts": templates_hash()}
    for name in PARTS[2:]:
        section = dumped[name]
        parts[name] = _digest({k: v for k, v in section.items() if k not in _RUN_ONLY.get(name, set())})
    parts["all"] = _digest(parts)
    return parts


def changed_parts(now: dict[str, str], recorded: dict[str, str]) -> list[str]:
    """The parts whose hash differs (a part missing from the record counts as changed)."""
    return [p for p in PARTS if now.get(p) != recorded.get(p)]
