"""The ZenML pipeline on the sample data, in a fresh ZenML store and MLflow store under tmp_path.

Runs the real CLI in subprocesses so that ZenML's global state (read once per
process) points at tmp_path and nothing touches the user's stores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE_DATA

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "empathy_distill.cli"]


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
    env.pop("MLFLOW_TRACKING_URI", None)
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*CLI, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def test_init_is_idempotent_and_pipeline_logs_to_mlflow(zen, tmp_path):
    first = zen("init").stdout
    assert "ZenML repository: created" in first
    assert "experiment tracker 'empathy-mlflow-tracker': registered" in first
    assert "model registry 'empathy-mlflow-registry': registered" in first
    assert "stack 'empathy-local': registered" in first
    second = zen("init").stdout
    for item in ("ZenML repository: found", "tracker 'empathy-mlflow-tracker': found", "registry 'empathy-mlflow-registry': found",
                 "stack 'empathy-local': found", "active stack: already 'empathy-local'"):
        assert item in second
    assert "registered" not in second and "created" not in second

    out = zen("run", "--config", str(REPO / "configs" / "demo.yaml"), "--set", f"data.path={SAMPLE_DATA}").stdout
    assert "(completed)" in out
    run_id = re.search(r"MLflow run: (\w+)", out).group(1)
    uri = re.search(r"--backend-store-uri (\S+)", out).group(1)
    assert uri.startswith("sqlite:///") and str(tmp_path) in uri
    assert "pipeline runs list --name distill-demo-" in out

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.params["ingest.format"] == "llms_vs_humans"
    assert run.data.params["ingest.data_hash"].startswith("sha256:")
    assert run.data.params["ingest.data_path"] == str(SAMPLE_DATA)
    metrics = run.data.metrics
    assert metrics["ingest.rows_kept"] == 300 and metrics["ingest.rows_quarantined"] == 0
    assert metrics["ingest.train_dialogues"] + metrics["ingest.test_dialogues"] == 60
    artifacts = {a.path for a in client.list_artifacts(run_id, "ingest")}
    assert artifacts == {"ingest/report.json", "ingest/quarantine.jsonl"}
    report = json.loads(Path(client.download_artifacts(run_id, "ingest/report.json", str(tmp_path))).read_text())
    assert report["data_hash"] == run.data.params["ingest.data_hash"]
    assert report["responses_read"] == 300

    # the dialogue table is stored as parquet by ZenML's pandas materializer, not pickled
    assert list((tmp_path / "zen").rglob("*.parquet*"))

    # training: per-step loss, DPO rewards, curves, adapters, generation
    assert re.search(r"SFT: \d+ steps on 149 rows", out) and re.search(r"DPO: \d+ steps on 149 rows", out)
    assert "generation: 14 test prompts answered" in out
    assert len(client.get_metric_history(run_id, "sft.loss")) >= 5
    assert client.get_metric_history(run_id, "dpo.rewards.margins")
    assert metrics["dpo.train_pairs.rewards.accuracies"] > 0.5
    assert run.data.tags["sft.adapter_changed"] == "True" and run.data.tags["dpo.adapter_changed"] == "True"
    assert run.data.params["dpo.reference"] == "sft_adapter" and run.data.params["dpo.beta"] == "0.1"
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {"plots/sft_curves.png", "plots/dpo_curves.png"}
    assert {a.path for a in client.list_artifacts(run_id, "adapters/dpo")} >= {"adapters/dpo/adapter_config.json", "adapters/dpo/adapter_model.safetensors"}
    assert metrics["generation.prompts"] == 14
    # evaluation by the offline scorer, in both orders, with CIs
    assert "evaluation (tuned student vs opponent" in out and "judge scorer: win rate" in out
    for opponent in ("base", "human", "llm"):
        assert metrics[f"eval.{opponent}.scorer.n"] == 14
        assert metrics[f"eval.{opponent}.scorer.ci_low"] <= metrics[f"eval.{opponent}.scorer.win_rate"] <= metrics[f"eval.{opponent}.scorer.ci_high"]
        assert metrics[f"eval.{opponent}.scorer.position_consistency"] == 1.0
    assert {a.path for a in client.list_artifacts(run_id, "evaluation")} == {"evaluation/evaluation.json", "evaluation/evaluation.md", "evaluation/win_rates.png"}
    resolved = json.loads(Path(client.download_artifacts(run_id, "config/resolved.json", str(tmp_path))).read_text())
    assert resolved["training"]["beta"] == 0.1 and resolved["teacher"]["api_key_env"] == "OPENAI_API_KEY"

    # a second run with the same inputs is served from ZenML's cache
    again = zen("run", "--config", str(REPO / "configs" / "demo.yaml"), "--set", f"data.path={SAMPLE_DATA}").stdout
    assert "(cached)" in again or "(completed)" in again


def test_pipeline_bad_input_is_one_line(zen, tmp_path):
    zen("init")
    proc = zen("run", "--config", str(REPO / "configs" / "demo.yaml"), "--set", f"data.path={tmp_path / 'missing.csv'}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.csv'}: file not found"
    assert "Traceback" not in proc.stderr


def test_run_without_init_says_what_to_do(zen):
    proc = zen("run", "--config", str(REPO / "configs" / "demo.yaml"), "--set", f"data.path={SAMPLE_DATA}", check=False)
    assert proc.returncode == 2
    assert "run `empathy-distill init` first" in proc.stderr


def test_bootstrap_pipeline_against_an_openai_compatible_server(zen, tmp_path):
    from empathy_distill.teacher.loopback import LoopbackServer

    zen("init")
    with LoopbackServer() as server:
        out = zen(
            "bootstrap", "--config", str(REPO / "configs" / "paper.yaml"),
            "--set", f"data.path={SAMPLE_DATA}", "--set", "data.split.method=auto",
            "--set", f"teacher.base_url={server.base_url}", "--set", f"teacher.cache_path={tmp_path / 'cache.sqlite'}",
        ).stdout
        assert server.received == 92
    assert "training sets (improve_llm/all_three): 25 SFT rows, 21 DPO pairs, 0 quarantined, test leakage 0; teacher requests 92" in out
    run_id = re.search(r"MLflow run: (\w+)", out).group(1)
    uri = re.search(r"--backend-store-uri (\S+)", out).group(1)
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.params["bootstrap.method"] == "improve_llm"
    assert run.data.params["bootstrap.teacher_model"] == "gpt-4o"
    assert run.data.params["bootstrap.prompt_hash"].startswith("sha256:")
    metrics = run.data.metrics
    assert metrics["teacher.requests"] == 92
    assert metrics["teacher.initial.requests"] == 46 and metrics["teacher.all_three.requests"] == 46
    assert metrics["teacher.cost_usd"] > 0 and metrics["teacher.prompt_tokens"] > 0
    assert metrics["training_sets.sft_rows"] == 25 and metrics["training_sets.dpo_pairs"] == 21
    # no secret reached MLflow: only the variable's name
    assert all("sk-" not in str(v) for v in run.data.params.values())


def test_ablation_grid_with_loopback_teacher_and_judge(zen, tmp_path):
    from empathy_distill.teacher.loopback import LoopbackServer

    zen("init")
    with LoopbackServer() as server:
        judges = (
            "evaluation.judges=[{name: scorer, kind: scorer}, "
            f"{{name: loop, kind: llm, endpoint: {{base_url: '{server.base_url}', model: judge, cache_path: '{tmp_path / 'judge.sqlite'}'}}}}]"
        )
        out = zen(
            "ablation", "--config", str(REPO / "configs" / "ablation.yaml"),
            "--set", f"data.path={SAMPLE_DATA}", "--set", f"teacher.base_url={server.base_url}",
            "--set", "ablation.methods=[direct, improve_llm]", "--set", "ablation.strategies=[sequential]",
            "--set", judges,
        ).stdout
    assert "(completed)" in out
    rows = [line for line in out.splitlines() if line.startswith("| direct") or line.startswith("| improve_llm")]
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| direct", "none", "sft"], ["| direct", "none", "sft+dpo"], ["| improve_llm", "sequential", "sft"], ["| improve_llm", "sequential", "sft+dpo"],
    ]
    assert "vs base (loop)" in out and "vs human (scorer)" in out
    # the teacher: 46 initial + 3 x 46 sequential turns; the judge: pairs in both orders, 3 opponents x 14
    # dialogues per cell (pairs that repeat across cells, such as identical replies, come from the cache)
    assert server.statuses["200"] > 46 * 4 + 3 * 14 * 2
