"""The ZenML pipeline on the sample data, in a fresh ZenML store and MLflow store under tmp_path.

Runs the real CLI in subprocesses so that ZenML's global state (read once per
process) points at tmp_path and nothing touches the user's stores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import DISTILL_STEPS, GATE_OUT_OF_REACH, REPO, SAMPLE_DATA
from tests.dashboard import chromium_reason

pytestmark = pytest.mark.e2e
# The sample through improve_llm + all_three: 2 teacher requests per train dialogue
N_TEACHER_REQUESTS, N_SFT, N_DPO = 90, 24, 21


def test_init_is_idempotent_and_pipeline_logs_to_mlflow(zen, tmp_path):
    first = zen("init").stdout
    assert "ZenML repository: created" in first
    assert "experiment tracker 'empathy-mlflow-tracker': registered" in first
    assert "model registry 'empathy-mlflow-registry': registered" in first
    assert "stack 'empathy-local': registered" in first
    second = zen("init").stdout
    for item in (
        "ZenML repository: found",
        "tracker 'empathy-mlflow-tracker': found",
        "registry 'empathy-mlflow-registry': found",
        "stack 'empathy-local': found",
        "active stack: already 'empathy-local'",
    ):
        assert item in second
    assert "registered" not in second and "created" not in second

    proc = zen(
        "distill",
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--set",
        f"data.path={SAMPLE_DATA}",
        *GATE_OUT_OF_REACH,
    )
    out = proc.stdout
    assert "(completed)" in out
    # a quiet console in a log (no terminal): no progress bars, no per-step training dicts, no library notes
    console = proc.stdout + proc.stderr
    for noise in (
        "it/s]",
        "examples/s]",
        "{'loss'",
        "Failed to disable MLflow autologging",
        "An input example was not provided",
        "pin_memory",
        "can be interpreted in multiple ways",
        "Creating initial MLflow database tables",
        "Successfully registered model",
    ):
        assert noise not in console, noise
    assert "\n\n" not in console.strip(), console  # no bare newlines from progress bars
    # one line per step as it ends (what it did, counts, seconds), then the summary, on one screen
    lines = console.splitlines()
    stage_lines = [line for line in lines if re.match(r"^\w+: .+ \(\d+\.\d s\)$", line)]
    assert [line.split(":")[0] for line in stage_lines] == DISTILL_STEPS, console
    assert "train_sft: " in console and re.search(r"train_sft: \d+ steps on 133 rows, loss \d+\.\d+", console)
    assert lines.index(stage_lines[-1]) < next(i for i, line in enumerate(lines) if line.startswith("pipeline run:"))
    assert len(lines) < 50, console
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
    assert re.search(r"SFT: \d+ steps on 133 rows", out) and re.search(r"DPO: \d+ steps on 45 rows", out)
    assert "generation: 15 test prompts answered" in out
    assert len(client.get_metric_history(run_id, "sft.loss")) >= 5
    assert client.get_metric_history(run_id, "dpo.rewards.margins")
    assert metrics["dpo.train_pairs.rewards.accuracies"] > 0.5
    assert run.data.tags["sft.adapter_changed"] == "True" and run.data.tags["dpo.adapter_changed"] == "True"
    assert run.data.params["dpo.reference"] == "sft_adapter" and run.data.params["dpo.beta"] == "0.1"
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {"plots/sft_curves.png", "plots/dpo_curves.png"}
    assert {a.path for a in client.list_artifacts(run_id, "adapters/dpo")} >= {
        "adapters/dpo/adapter_config.json",
        "adapters/dpo/adapter_model.safetensors",
    }
    assert metrics["generation.prompts"] == 15
    # evaluation by the offline scorer, in both orders, with CIs
    assert "evaluation (valid; tuned student vs opponent" in out and "judge scorer: win rate" in out
    assert metrics["eval.valid"] == 1.0 and run.data.tags["eval.ci_method"] == "wilson"
    for opponent in ("base", "human", "llm"):
        m = {k.rsplit(".", 1)[1]: v for k, v in metrics.items() if k.startswith(f"eval.{opponent}.scorer.")}
        assert m["n"] == 15 and m["wins"] + m["ties"] + m["losses"] + m["invalid"] == 15
        # the logged figures agree with their own counts: the rate, and a Wilson interval recomputed here (z 1.96)
        scored = m["n"] - m["invalid"]
        rate = (m["wins"] + m["ties"] / 2) / scored
        z, p = 1.959964, rate
        centre = (p + z * z / (2 * scored)) / (1 + z * z / scored)
        half = z * ((p * (1 - p) / scored + z * z / (4 * scored * scored)) ** 0.5) / (1 + z * z / scored)
        assert abs(m["win_rate"] - rate) < 1e-6
        assert abs(m["ci_low"] - max(0.0, centre - half)) < 1e-4 and abs(m["ci_high"] - min(1.0, centre + half)) < 1e-4
    assert {a.path for a in client.list_artifacts(run_id, "evaluation")} == {
        "evaluation/evaluation.json",
        "evaluation/evaluation.md",
        "evaluation/win_rates.png",
    }
    resolved = json.loads(Path(client.download_artifacts(run_id, "config/resolved.json", str(tmp_path))).read_text())
    assert resolved["training"]["beta"] == 0.1 and resolved["teacher"]["api_key_env"] == "OPENAI_API_KEY"
    assert_genai_side(client, run, tmp_path)
    if chromium_reason() is None:  # the same pages in MLflow's UI, rendered (skipped only where Chromium is absent)
        render_mlflow_pages(uri, client, run, tmp_path)

    # a judge endpoint that is down: one error line naming the step and the cause, exit code 3 ...
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    endpoint = f"{{base_url: '{dead}', model: j, max_retries: 0, cache_path: '{tmp_path / 'j.sqlite'}'}}"
    judge = f"evaluation.judges=[{{name: down, kind: llm, endpoint: {endpoint}}}]"
    down = zen("evaluate", "--config", str(REPO / "configs" / "tiny.yaml"), "--set", judge, check=False)
    assert down.returncode == 3, down.stdout + down.stderr
    last = down.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: step 'evaluate_responses' failed: JudgeError: judge 'down': 30 of 30 requests failed"
    ), last
    # ... unless the config says to keep going: then the report says it is not valid, and NaN is logged, not dropped
    kept = zen(
        "evaluate",
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--set",
        judge,
        "--set",
        "evaluation.on_judge_error=continue",
    ).stdout
    assert (
        "evaluation (NOT VALID: base/down: 15 of 15 comparisons invalid (100% > 10%); base/down: 30 judge requests "
        "failed;" in kept
    )
    kept_run = client.get_run(re.search(r"MLflow run: (\w+)", kept).group(1))
    assert kept_run.data.metrics["eval.valid"] == 0.0 and kept_run.data.tags["eval.valid"] == "false"
    assert (
        kept_run.data.metrics["eval.base.down.win_rate"] != kept_run.data.metrics["eval.base.down.win_rate"]
    )  # NaN, logged

    # a second run with the same inputs is served from ZenML's cache up to training; the champion (v1, this very
    # adapter, loaded as the registered model) now answers too, so generation onwards runs again, and the promote
    # step is never cached. The champion's replies equal the tuned ones: every comparison is a tie.
    demo = str(REPO / "configs" / "tiny.yaml")
    assert "promotion: v1 not promoted (champion stays none)" in out  # a gate out of reach of 15 dialogues
    zen("promote", "--config", demo, "--version", "1", "--force", "--reason", "a champion to judge against")
    again = zen("run", "--config", demo, "--set", f"data.path={SAMPLE_DATA}").stdout
    assert re.search(r"steps: 12 ran, 0 cached", out), out
    assert "steps: 4 ran, 8 cached" in again, again
    assert re.search(r"vs champion judge scorer: win rate 0.500 \[0.274, 0.726\], W/T/L 0/15/0", again), again
    assert "registered: models:/empathy-student/2 (alias challenger), judged against champion: v1" in again


def assert_genai_side(client, run, tmp_path) -> None:
    """MLflow's GenAI side after a demo run, read through its API: every template in the prompt registry, the
    student's system prompt linked to the run and to the logged model; the generation and judging traces; the
    verdict table per judge; the registered version's logged model with the evaluation's metrics and params."""
    import mlflow

    from empathy_distill.registry.prompt_registry import all_templates, prompt_name

    prompts = {p.name for p in client.search_prompts()}
    assert prompts == {prompt_name(t) for t in all_templates()} and len(prompts) == 14
    linked = json.loads(run.data.tags["mlflow.linkedPrompts"])
    assert linked == [{"name": "empathy-distill.student_system", "version": "1"}]
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        found = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list")
        names = {t.data.spans[0].name: [s.name for s in t.data.spans[1:]] for t in found}
        assert set(names) == {"generation", "evaluation"}, names
        assert names["generation"] == ["generate base batch 0", "generate tuned batch 0"]
        assert sorted(names["evaluation"]) == ["judge scorer vs base", "judge scorer vs human", "judge scorer vs llm"]
        # (MlflowClient.load_table searches runs through the global tracking URI, not the client's: inside here)
        table = client.load_table(run.info.experiment_id, "tables/verdicts_scorer.json", run_ids=[run.info.run_id])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(table) == 45 and set(table["opponent"]) == {"base", "human", "llm"}
    assert {"dialogue_id", "candidate_reply", "opponent_reply", "verdict_candidate_first", "outcome"} <= set(table)
    wins = int(((table["opponent"] == "base") & (table["outcome"] == "win")).sum())
    assert wins == run.data.metrics["eval.base.scorer.wins"]  # the table is the figures' own rows
    version = client.get_model_version("empathy-student", run.data.tags["registry.version"])
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    on_model = {(m.key, m.dataset_name) for m in model.metrics}
    assert ("eval.base.scorer.win_rate", "dialogues") in on_model and (
        "eval.base.scorer.ci_low",
        "dialogues",
    ) in on_model
    assert model.params["training.lora.r"] == "8" and model.params["bootstrap.method"] == "direct"
    assert json.loads(model.tags["mlflow.linkedPrompts"]) == linked
    assert "prompts:/empathy-distill.student_system/1" in version.description


def render_mlflow_pages(uri: str, client, run, tmp_path) -> None:
    """MLflow's UI on this run's store (``mlflow server``), rendered by headless Chromium: the run's verdict table,
    its traces, the logged model behind the version (metrics, dataset, version), the version page naming its prompt
    versions, and the prompt registry. Each page must show its text (a blank or half-loaded page fails); the PNGs are
    kept in the test's folder, and copied to ``EMPATHY_UI_SHOTS`` when it is set."""
    import os
    import shutil

    from tests.dashboard import render_open
    from tests.services import mlflow_server

    version = client.get_model_version("empathy-student", run.data.tags["registry.version"])
    exp, run_id, model_id = run.info.experiment_id, run.info.run_id, version.source.removeprefix("models:/")
    with mlflow_server(uri, tmp_path / "ui-artifacts", tmp_path / "ui-server.log") as base:
        pages = {
            "verdict-table": (
                f"{base}/#/experiments/{exp}/runs/{run_id}/artifacts/tables/verdicts_scorer.json",
                ["tables/verdicts_scorer.json", "verdict_candidate_first", "outcome", "sample:0"],
            ),
            "traces": (
                f"{base}/#/experiments/{exp}/runs/{run_id}/traces",
                ['"candidate": "tuned_response"', '"sides"'],
            ),
            "logged-model": (
                f"{base}/#/experiments/{exp}/models/{model_id}",
                ["Datasets used", "dialogues", "empathy-student", "eval.base.scorer.win_rate"],
            ),
            "version": (
                f"{base}/#/models/empathy-student/versions/{version.version}",
                ["prompts:/empathy-distill.student_system/1"],
            ),
            "prompts": (f"{base}/#/prompts", ["empathy-distill.naive", "empathy-distill.student_system"]),
        }
        shots = os.environ.get("EMPATHY_UI_SHOTS")
        for name, (url, must_show) in pages.items():
            _, png = render_open(url, must_show, timeout_s=90)
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, name  # a real page, not a blank one
            (tmp_path / f"mlflow-{name}.png").write_bytes(png)
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                shutil.copy(tmp_path / f"mlflow-{name}.png", Path(shots) / f"mlflow-{name}.png")


def test_pipeline_bad_input_is_one_line(zen, tmp_path):
    zen("init")
    proc = zen(
        "run",
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--set",
        f"data.path={tmp_path / 'missing.csv'}",
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.csv'}: file not found"
    assert "Traceback" not in proc.stderr


def test_run_without_init_says_what_to_do(zen):
    proc = zen("run", "--config", str(REPO / "configs" / "tiny.yaml"), "--set", f"data.path={SAMPLE_DATA}", check=False)
    assert proc.returncode == 2
    assert "run `empathy-distill init` first" in proc.stderr


def test_bootstrap_pipeline_against_an_openai_compatible_server(zen, tmp_path):
    import uuid

    from empathy_distill.testing.loopback import LoopbackServer

    zen("init")
    # a recognisable key in the variable the config names: the teacher must receive it, nothing may store it
    secret = f"sk-planted-{uuid.uuid4().hex}"
    with LoopbackServer() as server:
        args = [
            "bootstrap",
            "--config",
            str(REPO / "configs" / "paper.yaml"),
            "--set",
            f"data.path={SAMPLE_DATA}",
            "--set",
            "data.split.method=auto",
            "--set",
            f"teacher.base_url={server.base_url}",
            "--set",
            f"teacher.cache_path={tmp_path / 'cache.sqlite'}",
            "--set",
            "teacher.api_key_env=EMPATHY_TEST_TEACHER_KEY",
        ]
        # as a user runs it outside make (no ZENML_LOGGING_VERBOSITY): one line per step, then the summary
        proc = zen(*args, extra_env={"EMPATHY_TEST_TEACHER_KEY": secret, "ZENML_LOGGING_VERBOSITY": None})
        out = proc.stdout
        # bootstrap_responses says its plan before the first request, then what it did
        steps = ["ingest_dialogues", "validate_dialogues", "bootstrap_responses", "bootstrap_responses"]
        steps += ["build_training_sets", "validate_training_sets"]
        head = out.split("pipeline run: ")[0].splitlines()
        assert [line.split(":")[0] for line in head] == steps, out + proc.stderr
        # the one warning this run has (the sample is smaller than the paper's set sizes) is said once, on stderr
        warned = "only 45 train dialogues for 950 SFT + 800 DPO"
        assert proc.stderr.splitlines() == [f"WARNING empathy_distill.teacher.rewrite: {warned}: using 24 + 21"]
        assert warned not in out
        assert len(out.splitlines()) < 20, out
        assert f"bootstrap_responses: teacher plan: {N_TEACHER_REQUESTS} requests for 45 dialogues (2 each);" in out
        assert f"; teacher: {N_TEACHER_REQUESTS} sent (0 cached), $" in out  # the step's own line
        assert server.received == N_TEACHER_REQUESTS
        assert server.bearer_tokens == {secret: N_TEACHER_REQUESTS}  # the key was really in play
        # a rerun sends nothing and says so: its steps are reused (ZenML's cache) or its replies come from the
        # reply cache (--no-cache); its "MLflow run:" names the run that has the teacher's figures
        reused = zen(*args, extra_env={"EMPATHY_TEST_TEACHER_KEY": secret}).stdout
        replayed = zen(*args, "--no-cache", extra_env={"EMPATHY_TEST_TEACHER_KEY": secret}).stdout
        assert server.received == N_TEACHER_REQUESTS
    sets = f"training sets (improve_llm/all_three): {N_SFT} SFT rows, {N_DPO} DPO pairs, 0 quarantined, test leakage 0"
    assert re.search(re.escape(sets) + rf"; teacher: {N_TEACHER_REQUESTS} sent \(0 cached\), \$\d+\.\d\d", out), out
    assert f"; teacher: 0 sent (step reused: its first run sent {N_TEACHER_REQUESTS} for $" in reused, reused
    assert f"; teacher: 0 sent ({N_TEACHER_REQUESTS} cached), $0.00" in replayed, replayed
    assert "all 45 first-turn replies cached (a rerun: expect 0 sent)" in replayed
    run_id = re.search(r"MLflow run: (\w+)", out).group(1)
    assert re.search(r"MLflow run: (\w+)", reused).group(1) == run_id and "whose steps this rerun reused" in reused
    assert re.search(r"MLflow run: (\w+)", replayed).group(1) != run_id  # its steps ran: its own run
    uri = re.search(r"--backend-store-uri (\S+)", out).group(1)
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.params["bootstrap.method"] == "improve_llm"
    assert run.data.params["bootstrap.teacher_model"] == "gpt-4o"
    assert run.data.params["bootstrap.prompt_hash"].startswith("sha256:")
    metrics = run.data.metrics
    assert metrics["teacher.requests"] == N_TEACHER_REQUESTS
    assert metrics["teacher.initial.requests"] == metrics["teacher.all_three.requests"] == N_TEACHER_REQUESTS / 2
    assert metrics["teacher.cost_usd"] > 0 and metrics["teacher.prompt_tokens"] > 0
    assert metrics["training_sets.sft_rows"] == N_SFT and metrics["training_sets.dpo_pairs"] == N_DPO
    # each teacher stage is a trace in the run, a span per request with its prompt version (and no key: below)
    mlflow.set_tracking_uri(uri)
    try:
        traced = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run_id, return_type="list")
    finally:
        mlflow.set_tracking_uri(None)
    stages = {t.data.spans[0].name: t.data.spans[1:] for t in traced}
    assert set(stages) == {"teacher initial", "teacher all_three"}, stages
    assert len(stages["teacher initial"]) == N_TEACHER_REQUESTS / 2  # 45 requests, under the default cap of 64
    assert {s.attributes["prompt"] for s in stages["teacher all_three"]} == {"prompts:/empathy-distill.all_three/1"}
    assert {s.attributes["cache"] for s in stages["teacher initial"]} == {"sent"}
    # the key is nowhere: not in the MLflow store, the ZenML store, artifacts, caches or logs
    mlflow_db = Path(uri.removeprefix("sqlite:///"))
    scanned = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert mlflow_db in scanned and (tmp_path / "cache.sqlite") in scanned
    assert any("zenml" in p.name and p.suffix == ".db" for p in scanned)  # the ZenML store
    assert any(p.suffix == ".parquet" or "parquet" in p.name for p in scanned)  # artifacts
    assert not [p for p in scanned if secret.encode() in p.read_bytes()]
    assert secret not in proc.stdout + proc.stderr


def test_ablation_grid_with_loopback_teacher_and_judge(zen, tmp_path):
    from empathy_distill.testing.loopback import LoopbackServer

    zen("init")
    with LoopbackServer() as server:
        judges = (
            "evaluation.judges=[{name: scorer, kind: scorer}, "
            f"{{name: loop, kind: llm, endpoint: {{base_url: '{server.base_url}', model: judge, cache_path: "
            f"'{tmp_path / 'judge.sqlite'}'}}}}]"
        )
        out = zen(
            "ablation",
            "--config",
            str(REPO / "configs" / "ablation.yaml"),
            "--set",
            f"data.path={SAMPLE_DATA}",
            "--set",
            f"teacher.base_url={server.base_url}",
            "--set",
            "ablation.methods=[direct, improve_llm]",
            "--set",
            "ablation.strategies=[sequential]",
            "--set",
            judges,
        ).stdout
    assert "(completed)" in out
    rows = [line for line in out.splitlines() if line.startswith("| direct") or line.startswith("| improve_llm")]
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| direct", "none", "sft"],
        ["| direct", "none", "sft+dpo"],
        ["| improve_llm", "sequential", "sft"],
        ["| improve_llm", "sequential", "sft+dpo"],
    ]
    assert "vs base (loop)" in out and "vs human (scorer)" in out
    # every cell's evaluation is complete: each opponent judged by both judges, no failed request, no invalid verdict
    # beyond the limit; a cell may still be not valid because its tiny student's replies degenerated (the student's
    # quality, not the grid's plumbing), and then the table says so under it, cell by cell
    for row in rows:
        method, strategy, stages, valid = (part.strip("| ") for part in row.split(" | ")[:4])
        if valid != "yes":
            why = re.search(rf"^- {method} / {strategy} / {re.escape(stages)} is not valid: (.+)$", out, re.M)
            assert why, out
            other = ("no responses in this data", "comparisons invalid", "judge requests failed", "no comparisons")
            assert "replies degenerate" in why.group(1) and not any(o in why.group(1) for o in other), why.group(1)
    # the teacher: 45 initial + 3 x 45 sequential turns; the judge: pairs in both orders, 3 opponents x 15
    # dialogues per cell (pairs that repeat across cells, such as identical replies, come from the cache)
    assert server.statuses["200"] > 45 * 4 + 3 * 15 * 2
