"""The production tracking set-up: an MLflow server on PostgreSQL (basic auth), the promotion history in PostgreSQL.

`empathy-distill init --tracking-uri` points the stack at the server; the demo pipeline, registration,
promotion, lineage and serving then all go through it. Skips with the reason where PostgreSQL is absent.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import GATE_OUT_OF_REACH, REPO, SAMPLE_DATA
from tests.services import ADMIN, free_port, mlflow_server, postgres_database, postgres_reason

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(postgres_reason() is not None, reason=postgres_reason() or "")]
DEMO = str(REPO / "configs" / "tiny.yaml")


def test_pipeline_registry_and_serving_against_a_tracking_server_on_postgres(zen, tmp_path, monkeypatch):
    import mlflow

    creds = {"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1]}
    with (
        postgres_database("ed_mlflow") as backend,
        postgres_database("ed_history") as history,
        mlflow_server(backend, tmp_path / "artifacts", tmp_path / "server.log", auth=True) as url,
    ):
        # without credentials in the environment, init says what it needs
        bare = zen("init", "--tracking-uri", url, check=False)
        assert (
            bare.returncode == 2
            and "needs credentials: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in bare.stderr
        )
        lines = zen("init", "--tracking-uri", url, extra_env=creds).stdout
        assert "secret 'empathy-mlflow-auth': created from the environment" in lines
        assert f"experiment tracker 'empathy-mlflow-tracker': registered (flavor mlflow, {url})" in lines
        assert f"MLflow tracking URI: {url}" in lines

        # from here on no credential is in the environment: they come from the ZenML secret
        out = zen(
            "run",
            "--config",
            DEMO,
            "--set",
            f"data.path={SAMPLE_DATA}",
            "--set",
            f"registry.history={history}",
            *GATE_OUT_OF_REACH,
        ).stdout
        assert "(completed)" in out and "registered: models:/empathy-student/1 (alias challenger)" in out
        assert "promotion: v1 not promoted (champion stays none)" in out  # a gate out of reach of 15 dialogues
        forced = zen(
            "promote",
            "--config",
            DEMO,
            "--version",
            "1",
            "--force",
            "--reason",
            "shared-server test",
            "--set",
            f"registry.history={history}",
        ).stdout
        assert "forced: v1 PROMOTED to champion (was none)" in forced, forced
        run_id = re.search(r"MLflow run: (\w+)", out).group(1)

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
        run = client.get_run(run_id)  # the run lives on the server (its store: PostgreSQL)
        assert run.data.metrics["eval.valid"] == 1.0 and len(run.inputs.dataset_inputs) == 3
        v1 = client.get_model_version("empathy-student", "1")
        assert v1.run_id == run_id and set(v1.aliases) == {"challenger", "champion"}
        assert ADMIN[1] not in json.dumps({**run.data.params, **run.data.tags}) and ADMIN[1] not in out

        import psycopg2

        with psycopg2.connect(backend) as db, db.cursor() as cur:  # the server's own tables hold the run
            cur.execute("SELECT count(*) FROM runs WHERE run_uuid = %s", (run_id,))
            assert cur.fetchone()[0] == 1
        with psycopg2.connect(history) as db, db.cursor() as cur:  # the decision is in the shared history
            cur.execute("SELECT version, status, entry->>'decision' FROM promotions ORDER BY seq")
            assert cur.fetchall() == [("1", "done", "not promoted"), ("1", "done", "promoted")]

        chain = json.loads(
            zen("lineage", "models:/empathy-student@champion", "--json", "--set", f"registry.history={history}").stdout
        )
        assert (
            chain["mlflow_run"]["run_id"] == run_id
            and chain["missing"] == []
            and [p["decision"] for p in chain["promotions"]] == ["not promoted", "promoted"]
        )

        # a manual rollback with no earlier champion is refused in one line, through the same shared history
        refused = zen("rollback", "--set", f"registry.history={history}", check=False)
        assert refused.returncode == 2 and "has no earlier champion" in refused.stderr

        # serving the champion from the server's registry
        port = free_port()
        env = {
            "ZENML_CONFIG_PATH": str(tmp_path / "zen"),
            "PYTHONPATH": str(REPO),
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "ZENML_ANALYTICS_OPT_IN": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "HF_HUB_OFFLINE": "1",
            "HOME": str(tmp_path),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=tmp_path / "work",
            env=env,
            stdout=open(tmp_path / "serve.log", "w"),  # noqa: SIM115 (the server owns the handle until it stops)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        from deploy.client import stop, wait_ready

        try:
            wait_ready(f"http://127.0.0.1:{port}", 120, proc)
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                headers={"Content-Type": "application/json"},
                data=json.dumps(
                    {"dataframe_records": [{"messages": [{"role": "user", "content": "I lost my keys again."}]}]}
                ).encode(),
            )
            assert json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"][0]["response"]
        finally:
            stop(proc.pid)
