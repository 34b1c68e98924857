"""The MLflow tracking server: down at the start costs one line before any step runs; killed during a run,
the step that needed it fails with a line naming it, and the rerun reuses every step that had finished."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import DISTILL_STEPS, REPO, SAMPLE_DATA
from tests.e2e.conftest import CLI
from tests.services import ADMIN, free_port, mlflow_server

DEMO = str(REPO / "configs" / "tiny.yaml")
CREDS = {"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1]}
# MLflow retries a refused connection for minutes by default; a test wants the failure, not the patience
FAST_FAIL = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def test_a_server_down_at_the_start_is_one_line_before_any_step(zen, tmp_path):
    with mlflow_server(
        f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "art", tmp_path / "mlflow.log", auth=True
    ) as url:
        zen("init", "--tracking-uri", url, extra_env=CREDS)
    proc = zen("distill", "--config", DEMO, "--set", f"data.path={SAMPLE_DATA}", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1].startswith(f"error: the MLflow tracking server at {url} does not answer")
    )
    assert "ingest_dialogues:" not in proc.stdout  # no step ran


def test_a_server_killed_mid_run_fails_the_step_and_the_rerun_reuses_what_finished(zen, tmp_path):
    port, store = free_port(), f"sqlite:///{tmp_path / 'mlflow.db'}"
    history = tmp_path / "promotions.sqlite"  # with a server, the promotion history is a database of its own
    server = mlflow_server(store, tmp_path / "art", tmp_path / "mlflow.log", auth=True, port=port)
    url = server.__enter__()
    try:
        zen("init", "--tracking-uri", url, extra_env=CREDS)
        env = {**zen.env, **FAST_FAIL}
        args = [
            "distill",
            "--config",
            DEMO,
            "--set",
            f"data.path={SAMPLE_DATA}",
            "--set",
            f"registry.history={history}",
        ]
        run = subprocess.Popen(
            [*CLI, *args], cwd=zen.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for line in run.stdout:  # the server goes as the sets are validated (the step ends its MLflow run after)
            if line.startswith("validate_training_sets:"):
                break
    finally:
        server.__exit__(None, None, None)
    out, err = run.communicate(timeout=600)
    assert run.returncode != 0, out
    last = err.strip().splitlines()[-1]
    # refused once the server is gone; reset or aborted when it went in the middle of a request
    failed = re.match(r"error: step '(\w+)' failed: MlflowException: .*Connection (refused|reset|aborted)", last)
    assert failed and failed.group(1) in DISTILL_STEPS[DISTILL_STEPS.index("validate_training_sets") :], last

    with mlflow_server(store, tmp_path / "art", tmp_path / "mlflow2.log", auth=True, port=port):
        rerun = zen(*args, extra_env=FAST_FAIL)
    ran, cached = map(int, re.search(r"steps: (\d+) ran, (\d+) cached", rerun.stdout).groups())
    # every step that had finished before the server went is reused; the rest run
    assert (
        "(completed)" in rerun.stdout
        and cached >= DISTILL_STEPS.index(failed.group(1))
        and ran + cached == len(DISTILL_STEPS)
    )
