"""A run killed with `kill -9` during train_sft is marked failed, with the reason, in ZenML and in MLflow by the
next command on the same store (here `lineage`), instead of showing `running` forever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import REPO, SAMPLE_DATA
from tests.e2e.conftest import CLI

pytestmark = pytest.mark.e2e

STATUS = """
import json
import mlflow
from zenml.client import Client
from app.stack import stack_tracking_uri
run = Client().list_pipeline_runs(size=1, sort_by="desc:created").items[0]
steps = {n: s.status.value for n, s in Client().get_pipeline_run(run.id).steps.items()}
client = mlflow.MlflowClient(tracking_uri=stack_tracking_uri())
found = client.search_runs([e.experiment_id for e in client.search_experiments()],
                           filter_string=f"attributes.run_name = '{run.name}'")
print(json.dumps({"zenml": run.status.value, "reason": run.get_body().status_reason, "steps": steps,
                  "mlflow": [(r.info.status, r.data.tags.get("empathy.failure_reason")) for r in found]}))
"""


def test_a_run_killed_during_training_is_marked_failed_by_the_next_command(zen, tmp_path):
    zen("init")
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*CLI, "distill", "--config", str(REPO / "configs" / "tiny.yaml"), "--set", f"data.path={SAMPLE_DATA}"],
            cwd=zen.work,
            env=zen.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    while "prepare_student:" not in log.read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    time.sleep(1.5)  # train_sft is under way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)

    def status() -> dict:
        got = subprocess.run(
            [zen.env.get("PYTHON", CLI[0]), "-c", STATUS], cwd=zen.work, env=zen.env, capture_output=True, text=True
        )
        assert got.returncode == 0, got.stderr
        return json.loads(got.stdout.strip().splitlines()[-1])

    before = status()
    assert before["zenml"] in ("running", "initializing") and before["steps"]["train_sft"] == "running", before
    assert ["RUNNING", None] in before["mlflow"], before

    audit = zen("lineage", "models:/empathy-student@champion", check=False)  # no champion: it says so, after reaping
    assert "marked failed in ZenML and MLflow" in audit.stderr, audit.stderr
    after = status()
    assert after["zenml"] == "failed" and "ended without finishing the run" in after["reason"], after
    assert after["steps"]["train_sft"] == "failed", after
    assert after["mlflow"] and all(s == "FAILED" and "pid" in (r or "") for s, r in after["mlflow"]), after
    again = zen("lineage", "models:/empathy-student@champion", check=False)
    assert "marked failed" not in again.stderr  # once
