"""Register, gate, promote, deploy, audit, retrain, roll back: the registry lifecycle through the real CLI.

One ZenML store and MLflow store under tmp_path, the sample data, and a changed copy of it
(the kind of refresh a scheduled retrain picks up).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import GATE_OUT_OF_REACH, REPO, SAMPLE_DATA
from tests.services import free_port

pytestmark = pytest.mark.e2e
DEMO = str(REPO / "configs" / "tiny.yaml")
# the lineage tags every version must carry, written here as the spec (not imported from the code under test)
LINEAGE_TAGS = """data_path data_hash prompt_hash method strategy teacher_model teacher_requests teacher_cost_usd judges
eval_valid adapter_hash base_model git_commit zenml_run_id zenml_run_name zenml_model_version_id zenml_model_version
mlflow_run_id champion_judged_against""".split()  # noqa: SIM905 (a list as prose reads as the spec it is)


def revise_ratings():
    spec = importlib.util.spec_from_file_location("revise_ratings", REPO / "data" / "sample" / "revise_ratings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def zenml_stage(tmp_path: Path, model_version_id: str) -> str:
    code = (
        "import sys; from uuid import UUID; from zenml.client import Client; "
        "print(Client().get_model_version('empathy-student', UUID(sys.argv[1])).stage)"
    )
    env = {
        "ZENML_CONFIG_PATH": str(tmp_path / "zen"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "PATH": str(Path(sys.executable).parent),
    }
    return subprocess.run(
        [sys.executable, "-c", code, model_version_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path / "work",
    ).stdout.strip()


def test_register_promote_deploy_audit_retrain_rollback(zen, tmp_path):
    import mlflow

    zen("init")
    port = free_port()
    deploy = [
        "--set",
        "registry.deploy.enabled=true",
        "--set",
        f"registry.deploy.port={port}",
        "--set",
        f"registry.deploy.state_dir={tmp_path / 'deploy'}",
    ]
    out = zen("run", "--config", DEMO, "--set", f"data.path={SAMPLE_DATA}", *deploy, *GATE_OUT_OF_REACH).stdout
    live = tmp_path / "deploy" / "live.json"
    try:
        # 1. registration: version 1, alias challenger; the gate's own decision (a bound that 15 dialogues cannot
        # reach, so the refusal does not depend on how the tiny student scores), no server, and what is left to do
        assert "registered: models:/empathy-student/1 (alias challenger), judged against champion: none" in out
        assert re.search(r"promotion: v1 not promoted \(champion stays none\): vs base: ci_low > 0.9 not met", out), out
        assert "deploy: nothing to do (no champion to serve)" in out and not live.exists()
        assert "Next (no version holds champion, so `serve` refuses to start until one does):" in out
        assert "promote --version 1 --force --reason" in out
        # the lifecycle goes on with v1 as champion by an explicit, recorded override of the gate
        forced = zen("promote", "--config", DEMO, "--version", "1", "--force", "--reason", "lifecycle test").stdout
        assert "forced: v1 PROMOTED to champion (was none)" in forced, forced

        uri = re.search(r"--backend-store-uri (\S+)", out).group(1)
        run_id = re.search(r"MLflow run: (\w+)", out).group(1)
        client = mlflow.MlflowClient(tracking_uri=uri)
        v1 = client.get_model_version("empathy-student", "1")
        assert set(v1.aliases) == {"challenger", "champion"}  # after the forced promotion
        for tag in LINEAGE_TAGS:
            assert v1.tags.get(f"lineage.{tag}"), tag
        run = client.get_run(run_id)
        assert v1.run_id == run_id and v1.tags["lineage.mlflow_run_id"] == run_id
        assert v1.tags["lineage.data_hash"] == run.data.params["ingest.data_hash"]
        assert v1.tags["lineage.adapter_hash"] == run.data.tags["dpo.adapter_hash"]
        # the version's page in MLflow shows the lineage and every decision about it, without the API
        page = v1.description
        assert f"- adapter: `{v1.tags['lineage.adapter_hash']}`" in page and "dialogues.csv" in page
        assert f"hash `{v1.tags['lineage.data_hash'][:19]}`" in page and "- vs base (scorer): " in page
        assert re.search(r"- #1 \S+ gate: not promoted \(champion none -> none\): vs base: ci_low", page), page
        assert re.search(r"- #2 \S+ forced: promoted \(champion none -> v1\): forced: lifecycle test", page), page
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        assert v1.tags["lineage.git_commit"].startswith(head)
        assert v1.tags["eval.base.scorer"].startswith(f"{run.data.metrics['eval.base.scorer.win_rate']:.3f} [")
        assert {k for k in v1.tags if k.startswith("inputs.")} == {
            f"inputs.{p}"
            for p in (
                "data",
                "prompts",
                "teacher",
                "bootstrap",
                "student",
                "training",
                "generation",
                "evaluation",
                "code",
                "libraries",
                "all",
            )
        }
        # the run page tells the story: datasets, the logged model, a description
        datasets = {
            (d.dataset.name, next(t.value for t in d.tags if t.key == "mlflow.data.context")): d.dataset
            for d in run.inputs.dataset_inputs
        }
        assert set(datasets) == {("dialogues", "ingest"), ("sft_train", "training"), ("dpo_train", "training")}
        assert datasets[("dialogues", "ingest")].digest == run.data.params["ingest.data_hash"][:36]
        assert json.loads(datasets[("dialogues", "ingest")].source)["uri"].endswith("dialogues.csv")
        assert run.outputs.model_outputs and run.outputs.model_outputs[0].model_id
        assert "Registered as `empathy-student` version 1" in run.data.tags["mlflow.note.content"]
        assert run.data.tags["promotion.decision"] == "not promoted" and "deploy.version" not in run.data.tags

        # 2. the lineage audit: every link, nothing missing
        chain = json.loads(zen("lineage", "models:/empathy-student@champion", "--json").stdout)
        assert chain["version"]["version"] == "1" and chain["mlflow_run"]["run_id"] == run_id
        assert (
            chain["zenml"]["pipeline_run_name"].startswith("distill-demo-") and chain["zenml"]["status"] == "completed"
        )
        assert chain["zenml"]["steps"]["promote_model"] == "completed" and chain["zenml"]["model_version_id"]
        assert (
            chain["data"]["hash"] == v1.tags["lineage.data_hash"]
            and chain["data"]["rows_kept"] == 300
            and chain["data"]["rows_quarantined"] == 0
        )
        assert chain["prompts"]["hash"].startswith("sha256:") and chain["teacher"]["model"] == "none (method direct)"
        assert (
            chain["training"]["adapter_hash"] == v1.tags["lineage.adapter_hash"]
            and chain["training"]["config"]["beta"] == 0.1
        )
        assert {c["opponent"] for c in chain["evaluation"]["comparisons"]} == {"base", "human", "llm"} and chain[
            "evaluation"
        ]["judges"] == ["scorer"]
        assert [(p["action"], p["decision"]) for p in chain["promotions"]] == [
            ("gate", "not promoted"),
            ("forced", "promoted"),
        ]
        assert chain["missing"] == []
        text = zen("lineage", "models:/empathy-student/1").stdout
        assert "empathy-student v1 (aliases: " in text and "missing:      nothing" in text
        assert zen("lineage", "models:/empathy-student/9", check=False).returncode == 2

        # 3. retrain: nothing changed -> no run; changed data -> a new version judged against the champion
        same = zen("retrain", "--config", DEMO, "--set", f"data.path={SAMPLE_DATA}").stdout
        assert "retrain: nothing changed since champion v1 (inputs sha256:" in same and "pipeline run" not in same
        # the same gate as the step a schedule runs (the retrain pipeline, here on the local orchestrator)
        gate = zen(DEMO, str(SAMPLE_DATA), entry=[sys.executable, "-m", "tests.retrain_probe"]).stdout
        assert "retrain: nothing changed since champion v1 (inputs sha256:" in gate and "distill runs: 1" in gate, gate
        changed = revise_ratings().revise(SAMPLE_DATA, tmp_path / "refreshed.csv")  # what `make demo-retrain` trains on
        # the scheduled path: the retrain pipeline's gate step sees the change and runs `empathy-distill distill`
        overrides = [arg for arg in deploy if arg != "--set"]
        second = zen(DEMO, str(changed), *overrides, entry=[sys.executable, "-m", "tests.retrain_probe"]).stdout
        assert "retrain: changed since champion v1: data: running" in second and "distill runs: 2" in second, second
        assert "registered: models:/empathy-student/2 (alias challenger), judged against champion: v1" in second
        assert re.search(
            r"vs champion judge scorer: win rate [\d.]+ \[[\d.]+, [\d.]+\], W/T/L \d+/\d+/\d+, invalid 0", second
        )
        run2 = client.get_run(re.search(r"MLflow run: (\w+)", second).group(1))
        assert run2.data.metrics["eval.champion.scorer.n"] == 15
        decided = re.search(r"promotion: v2 (PROMOTED to champion|not promoted)", second)
        assert decided, second
        champion = "2" if decided.group(1).startswith("PROMOTED") else "1"
        assert str(client.get_model_version_by_alias("empathy-student", "champion").version) == champion
        assert json.loads(live.read_text())["version"] == champion  # the server follows the champion
        served = json.loads(live.read_text())
        req = urllib.request.Request(
            served["url"] + "/invocations",
            data=json.dumps(
                {"dataframe_records": [{"messages": [{"role": "user", "content": "My dog is sick."}]}]}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"][0]
        assert answer["response"] and answer["finish_reason"] in ("stop", "length")

        # 4. a manual promotion goes through the same gate; --force needs a reason; rollback undoes it
        other = "1" if champion == "2" else "2"
        refused = zen("promote", "--config", DEMO, "--version", other, check=False)
        assert refused.returncode == 1 and "refused by the gate" in refused.stdout, refused.stdout + refused.stderr
        no_reason = zen("promote", "--config", DEMO, "--version", other, "--force", check=False)
        assert no_reason.returncode == 2 and "--force needs --reason" in no_reason.stderr
        forced = zen(
            "promote", "--config", DEMO, "--version", other, "--force", "--reason", "hotfix approved by the team"
        ).stdout
        assert (
            f"forced: v{other} PROMOTED to champion (was v{champion})" in forced
            and "reason: forced: hotfix approved by the team" in forced
        )
        assert str(client.get_model_version_by_alias("empathy-student", "champion").version) == other
        other_zen = client.get_model_version("empathy-student", other).tags["lineage.zenml_model_version_id"]
        assert zenml_stage(tmp_path, other_zen) == "production"
        back = zen("rollback", "--config", DEMO, "--reason", "undo the hotfix").stdout
        assert f"rollback: v{champion} PROMOTED to champion (was v{other})" in back
        assert str(client.get_model_version_by_alias("empathy-student", "champion").version) == champion

        from empathy_distill.registry.history import SQLiteHistory, check_chain

        history = SQLiteHistory(Path(uri.removeprefix("sqlite:///")).parent / "promotions.sqlite").entries(
            "empathy-student"
        )
        assert [e["action"] for e in history] == ["gate", "forced", "gate", "manual", "forced", "rollback"]
        assert check_chain(history, champion) == []
        audit = json.loads(zen("lineage", f"models:/empathy-student/{other}", "--json").stdout)
        assert [p["action"] for p in audit["promotions"]][-3:] == ["manual", "forced", "rollback"]

        # 5. scheduling: the local stack cannot run a schedule; `schedule` gives the crontab line that calls retrain
        cron = zen("schedule", "--config", DEMO, "--set", "schedule.cron=0 3 * * 1").stdout
        line = next(x for x in cron.splitlines() if x.startswith("0 3 * * 1 "))
        assert "retrain --config" in line and DEMO in line and "OnCalendar=Mon *-*-* 03:00:00" in cron
        timer = (zen.work / ".cache" / "schedule" / "empathy-retrain.timer").read_text()
        assert "OnCalendar=Mon *-*-* 03:00:00" in timer and "[Install]\nWantedBy=timers.target" in timer
        refused_schedule = zen(
            "run",
            "--config",
            DEMO,
            "--set",
            f"data.path={SAMPLE_DATA}",
            "--set",
            "schedule.cron=0 3 * * 1",
            check=False,
        )
        assert refused_schedule.returncode == 2
        assert (
            "cannot run schedules: run `empathy-distill schedule --config CONFIG`"
            in refused_schedule.stderr.strip().splitlines()[-1]
        )
    finally:
        if live.exists():
            from deploy.client import stop

            stop(json.loads(live.read_text())["pid"])
