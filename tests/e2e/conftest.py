"""The e2e fixture: the real CLI in subprocesses, with its ZenML and MLflow stores under tmp_path.

ZenML reads its global state once per process, so each command runs in its own
process pointing at tmp_path, and nothing touches the user's stores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

CLI = [sys.executable, "-m", "app.cli"]


@pytest.fixture
def zen(tmp_path: Path):
    env = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(tmp_path / "zen"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "ZENML_LOGGING_VERBOSITY": "WARN",
        "PYTHONPATH": str(REPO),
    }
    for inherited in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # the CLI's stores come from its config alone
        env.pop(inherited, None)
    work = tmp_path / "work"
    work.mkdir()

    def run(
        *args: str, check: bool = True, extra_env: dict[str, str | None] | None = None, entry: list[str] | None = None
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*(entry or CLI), *args],
            cwd=work,
            env={k: v for k, v in {**env, **(extra_env or {})}.items() if v is not None},  # None: unset it
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    run.env, run.work = env, work  # for a test that starts the CLI itself (Popen) with the same set-up
    return run
