"""A config made ready to launch: absolute paths, checked inputs, no secret in a parameter; the code version."""

import os
from pathlib import Path

from empathy_distill.config import DistillConfig
from empathy_distill.errors import ConfigError
from empathy_distill.preflight import check_run
from empathy_distill.teacher.openai_client import resolve_api_key
from empathy_distill.tracking import redacted, without_password


def prepared(config: DistillConfig, needs_teacher: bool, needs_student: bool = True) -> DistillConfig:
    """The config with every path made absolute (steps may run elsewhere than the CLI), checked early.

    Raises:
        InputError: the data file is missing, a folder, unreadable or empty.
        ConfigError: a teacher is needed and its key variable is unset; a model cannot be loaded from here.
    """

    check_run(config, needs_teacher, needs_student)
    if needs_teacher and config.teacher.backend == "openai":
        resolve_api_key(config.teacher)  # fail before the pipeline starts when the key is missing

    def absolute(value: str) -> str:
        return str(Path(value).resolve())

    # a database password in registry.history never travels as a pipeline parameter (ZenML stores those): the URL
    # goes without it, and libpq (the history's PostgreSQL driver) reads it from PGPASSWORD in this process and the
    # steps it runs; a remote orchestrator's pods get PGPASSWORD from a secret (docs/production-stack.md)
    history, password = without_password(history_location(config.registry.history))
    if password is not None:
        held = os.environ.get("PGPASSWORD")
        if held is not None and held != password:
            raise ConfigError("registry.history carries a password and PGPASSWORD holds another: keep one of them")
        os.environ["PGPASSWORD"] = password

    return config.model_copy(
        update={
            "data": config.data.model_copy(update={"path": absolute(config.data.path)}),
            "teacher": config.teacher.model_copy(update={"cache_path": absolute(config.teacher.cache_path)}),
            "student": config.student.model_copy(update={"cache_dir": absolute(config.student.cache_dir)}),
            "training": config.training.model_copy(update={"output_dir": absolute(config.training.output_dir)}),
            "evaluation": config.evaluation.model_copy(update={"cache_dir": absolute(config.evaluation.cache_dir)}),
            "registry": config.registry.model_copy(
                update={
                    "history": history,
                    "deploy": config.registry.deploy.model_copy(
                        update={"state_dir": absolute(config.registry.deploy.state_dir)}
                    ),
                }
            ),
        }
    )


def history_location(history: str | None) -> str | None:
    """A file path made absolute; a database URL as it is."""
    if history is None or "://" in history:
        return history
    return str(Path(history).resolve())


def git_commit() -> str:
    """The code version: HEAD of this checkout, ``-dirty`` when it has uncommitted changes, ``unknown`` outside git."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def sections(config: DistillConfig, *names: str) -> dict:
    """The named sections of ``config``, as pipeline parameters."""
    return {name: getattr(config, name) for name in names}


def resolved_config(config: DistillConfig) -> dict:
    """The config as logged: secrets redacted (only environment variable names are kept anyway)."""
    return redacted(config.model_dump())
