"""MLflow's UI after a demo run, rendered by headless Chromium (Debian's ``chromium``; .ci/run installs it): the
run's verdict table, the run's traces, the logged model behind the registered version (its metrics, its dataset,
its version), the version page naming its prompt versions, and the prompt registry. Each page must show its text
(a blank or half-loaded page fails); the PNGs are kept in the test's folder (``EMPATHY_UI_SHOTS``: copied there)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE_DATA
from tests.dashboard import chromium_reason, render_open
from tests.services import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def mlflow_ui(zen, tmp_path):
    reason = chromium_reason()
    if reason:
        pytest.skip(reason)
    zen("init")
    out = zen("run", "--config", str(REPO / "configs" / "tiny.yaml"), "--set", f"data.path={SAMPLE_DATA}").stdout
    uri = re.search(r"--backend-store-uri (\S+)", out).group(1)
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the MLflow server did not answer") from None
                time.sleep(0.5)
        yield base, uri, out
    finally:
        server.terminate()
        server.wait(30)


def test_the_demo_run_in_mlflows_ui(mlflow_ui, tmp_path):
    import mlflow

    base, uri, out = mlflow_ui
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("empathy-student", "1")
    run = client.get_run(version.run_id)
    exp, run_id, model_id = run.info.experiment_id, run.info.run_id, version.source.removeprefix("models:/")
    pages = {
        "verdict-table": (
            f"{base}/#/experiments/{exp}/runs/{run_id}/artifacts/tables/verdicts_scorer.json",
            ["tables/verdicts_scorer.json", "verdict_candidate_first", "outcome", "sample:0"],
        ),
        "traces": (f"{base}/#/experiments/{exp}/runs/{run_id}/traces", ['"candidate": "tuned_response"', '"sides"']),
        "logged-model": (
            f"{base}/#/experiments/{exp}/models/{model_id}",
            ["Datasets used", "dialogues", "empathy-student", "eval.base.scorer.win_rate"],
        ),
        "version": (f"{base}/#/models/empathy-student/versions/1", ["prompts:/empathy-distill.student_system/1"]),
        "prompts": (f"{base}/#/prompts", ["empathy-distill.naive", "empathy-distill.student_system"]),
    }
    shots = os.environ.get("EMPATHY_UI_SHOTS")
    for name, (url, must_show) in pages.items():
        text, png = render_open(url, must_show, timeout_s=90)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, name  # a real page, not a blank one
        (tmp_path / f"mlflow-{name}.png").write_bytes(png)
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / f"mlflow-{name}.png", Path(shots) / f"mlflow-{name}.png")
