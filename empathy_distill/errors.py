"""Errors that end a run with a one-line message instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Unusable input: the message names the file and, where known, the row and column.

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    """

    exit_code = 2

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
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
