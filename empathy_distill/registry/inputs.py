"""What a run is made of, hashed per part: the retrain gate compares these with the champion's.

A part's hash changes exactly when something that can change the trained adapter or its
evaluation changes: the data bytes, any prompt template (teacher, student system, judge),
the teacher, the bootstrap, student, training, generation and evaluation settings, the code
(the project's version and the bytes of every module of the packages that train, judge and
register: a fix to the training code is a change even before it is committed, and a commit
that only touches docs is not) and the libraries that train (torch, transformers, trl, peft,
datasets: an upgrade is a change).
Paths of caches, concurrency, timeouts and key variable names are left out: they change
how a run goes, not what it produces.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from empathy_distill.config import DistillConfig

PARTS = (
    "data",
    "prompts",
    "teacher",
    "bootstrap",
    "student",
    "training",
    "generation",
    "evaluation",
    "code",
    "libraries",
)
CONFIG_PARTS = PARTS[2:8]
"""The parts that are config sections."""
CODE_PACKAGES = ("empathy_distill", "steps", "pipelines", "materializers")
LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets")
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


def code_hash() -> str:
    """sha256 over the project's version and every ``.py`` file of :data:`CODE_PACKAGES` (relative names
    included), wherever they are installed."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    digest = hashlib.sha256()
    try:
        digest.update(version("empathy-distill").encode())
    except PackageNotFoundError:
        digest.update(b"unknown")
    for package in CODE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            digest.update(f"{package}: missing".encode())
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()


def library_versions() -> dict[str, str]:
    """The installed versions of :data:`LIBRARIES` ("missing" where one is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


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
    for name in CONFIG_PARTS:
        section = dumped[name]
        parts[name] = _digest({k: v for k, v in section.items() if k not in _RUN_ONLY.get(name, set())})
    parts["code"] = code_hash()
    parts["libraries"] = _digest(library_versions())
    parts["all"] = _digest(parts)
    return parts


def changed_parts(now: dict[str, str], recorded: dict[str, str]) -> list[str]:
    """The parts whose hash differs (a part missing from the record counts as changed)."""
    return [p for p in PARTS if now.get(p) != recorded.get(p)]
