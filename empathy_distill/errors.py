"""Errors that end a run with a one-line message instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Unusable input: the message names the file and, where known, the row and column.

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    """

    exit_code = 2

    def __init__(self, path: str | Path, problem: str, *, row: int | None = None, column: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.row = row
        self.column = column
        where = self.path
        if row is not None:
            where += f", line {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {problem}")


class ConfigError(Exception):
    """A config file or a ``--set`` override that does not fit the typed config."""

    exit_code = 2


class JudgeError(Exception):
    """A judge could not give its verdicts (its endpoint is down, refuses, or the budget ran out).

    Raised when ``evaluation.on_judge_error`` is ``fail``: an evaluation with missing
    verdicts must not look like one the student won or lost.
    """

    exit_code = 3


class StepFailed(Exception):
    """A pipeline step raised: the message names the step and its root cause (type and message)."""

    def __init__(self, step: str, cause_type: str, message: str) -> None:
        self.step, self.cause_type = step, cause_type
        # a judge that could not answer ends like the teacher does (3); any other step failure is 1
        self.exit_code = 3 if cause_type in ("JudgeError", "TeacherError") else 1
        super().__init__(f"step '{step}' failed: {cause_type}: {' '.join(message.split())}")
