"""A team's ZenML server: backed by the machine's MariaDB, the client connected to it, a run recorded there,
and that run's dashboard page rendered by headless Chromium.

Skips with the reason where MariaDB or Chromium is absent.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE_DATA
from tests.dashboard import chromium_reason, render
from tests.services import ADMIN, mariadb_database, mariadb_reason, mlflow_server, zenml_client_env, zenml_server

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(mariadb_reason() is not None, reason=mariadb_reason() or "")]
DEMO = str(REPO / "configs" / "tiny.yaml")
STACK_FILE = str(REPO / "configs" / "stacks" / "kubeflow.yaml")
CAPTURE = [sys.executable, "-m", "tests.kfp_capture"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(server URL, store URL) of a ZenML server on a fresh MariaDB database."""
    home = tmp_path_factory.mktemp("zenml-server")
    with mariadb_database("ed_zenml") as store, zenml_server(store, home / "zen", home / "server.log") as url:
        yield url, store


@pytest.mark.skipif(chromium_reason() is not None, reason=chromium_reason() or "")
def test_a_run_recorded_on_the_server_and_its_dashboard_page(server, zen, tmp_path):
    import pymysql
    from PIL import Image

    url, store = server
    client = zenml_client_env(url)
    lines = zen("init", extra_env=client).stdout
    assert "stack 'empathy-local': registered" in lines

    out = zen("run", "--config", DEMO, "--set", f"data.path={SAMPLE_DATA}", extra_env=client).stdout
    run_name = re.search(r"pipeline run: (\S+) \(completed\)", out).group(1)
    page = re.search(rf"ZenML dashboard: ({re.escape(url)}/projects/default/runs/([0-9a-f-]+))", out)
    assert page, out  # the summary links the run's page on the server

    # the run is in the server's database, not in a local store
    user, password, host, port, name = re.match(r"mysql://(\w+):(\w+)@([\d.]+):(\d+)/(\w+)", store).groups()
    with (
        pymysql.connect(host=host, port=int(port), user=user, password=password, database=name) as db,
        db.cursor() as cur,
    ):
        cur.execute("SELECT status FROM pipeline_run WHERE name = %s", (run_name,))
        assert cur.fetchall() == (("completed",),)
        cur.execute("SELECT count(*) FROM step_run WHERE pipeline_run_id = %s", (page.group(2).replace("-", ""),))
        assert cur.fetchone()[0] == 12
    assert not list((tmp_path / "zen").rglob("zenml.db"))  # no local ZenML store was made

    text, png = render(
        url, page.group(1), "default", "", must_show=[run_name, "train_sft", "promote_model", "completed"]
    )
    (tmp_path / "dashboard-run.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (1400, 900)
    colors = image.getcolors(maxcolors=1 << 20)
    background = max(colors)[0]
    # not blank: many colours, and a good part of the page is not the background (text, the DAG, the progress bar)
    assert len(colors) > 200 and 1 - background / (1400 * 900) > 0.05
    assert "Total Steps\n12" in text and "Completed\n12" in text


def zenml_dag(env: dict[str, str], run_id: str) -> dict[str, list[str]]:
    """step -> upstream steps, as the ZenML server holds them for a run's snapshot."""
    code = (
        "import json, sys; from zenml.client import Client; run = Client().get_pipeline_run(sys.argv[1]); "
        "print(json.dumps({n: sorted(s.spec.upstream_steps) for n, s in run.snapshot.step_configurations.items()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, run_id], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def kfp_tasks(package: str) -> dict[str, dict]:
    """task -> {after, image, command, resources} from a compiled KFP package (the IR YAML)."""
    import yaml

    spec = next(yaml.safe_load_all(Path(package).read_text()))
    executors = spec["deploymentSpec"]["executors"]
    dag = spec["root"]["dag"]["tasks"]
    tasks = {}
    for task in dag.values():
        container = executors[spec["components"][task["componentRef"]["name"]]["executorLabel"]]["container"]
        after = sorted(dag[key]["taskInfo"]["name"] for key in task.get("dependentTasks", []))
        tasks[task["taskInfo"]["name"]] = {
            "after": after,
            "image": container["image"],
            "command": container.get("command", []),
            "args": container.get("args", []),
            "resources": container.get("resources", {}),
        }
    return tasks


def test_distill_compiles_for_kubeflow_and_the_schedule_is_a_recurring_retrain(server, zen, tmp_path):
    import yaml

    url, _ = server
    capture = tmp_path / "kfp"
    env = {**zenml_client_env(url), "KFP_CAPTURE_DIR": str(capture)}
    creds = {"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1]}
    stack = yaml.safe_load(Path(STACK_FILE).read_text())
    with mlflow_server(
        f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts", tmp_path / "mlflow.log", auth=True
    ) as mlflow_url:
        refused = zen("init", "--stack-file", STACK_FILE, extra_env=env, check=False)
        assert refused.returncode == 2 and "need a shared MLflow tracking server: pass --tracking-uri" in refused.stderr
        lines = zen("init", "--stack-file", STACK_FILE, "--tracking-uri", mlflow_url, extra_env={**env, **creds}).stdout
        assert (
            "orchestrator 'empathy-kubeflow': registered (flavor kubeflow)" in lines
            and "active stack: set to 'empathy-kubeflow'" in lines
        )

        common = [
            "--config",
            DEMO,
            "--set",
            f"data.path={SAMPLE_DATA}",
            "--set",
            f"stack={STACK_FILE}",
            "--set",
            f"registry.history={tmp_path / 'promotions.sqlite'}",
        ]
        out = zen("run", *common, extra_env=env, entry=CAPTURE).stdout
        submitted = re.search(r"pipeline run: (\S+) submitted \((\w+)\) to orchestrator 'empathy-kubeflow'", out)
        assert submitted, out
        scheduled = zen("run", *common, "--set", "schedule.cron=0 3 * * 1", extra_env=env, entry=CAPTURE).stdout
        assert "scheduled: the retrain pipeline on cron '0 3 * * 1' on stack 'empathy-kubeflow'" in scheduled

    calls = [json.loads(line) for line in (capture / "calls.jsonl").read_text().splitlines()]
    assert [c["call"] for c in calls] == ["create_run_from_pipeline_package", "create_recurring_run"]
    one_off, recurring = calls

    # the distill pipeline: one task per ZenML step, the same edges, the image, GPUs where the stack file asks
    run_id = re.search(rf"{url}/projects/default/runs/([0-9a-f-]+)", out).group(1)
    dag = zenml_dag({**env}, run_id)
    tasks = kfp_tasks(one_off["package"])
    assert sorted(tasks) == sorted(dag) and len(tasks) == 12
    assert {name: task["after"] for name, task in tasks.items()} == dag
    image = stack["run"]["settings"]["docker"]["parent_image"]
    assert {task["image"] for task in tasks.values()} == {image}
    assert all(task["args"][task["args"].index("--step_name") + 1] == name for name, task in tasks.items())
    gpu_steps = set(stack["run"]["steps"])
    assert gpu_steps == {"train_sft", "train_dpo", "generate_responses"}
    for name, task in tasks.items():
        accelerator = task["resources"].get("accelerator")
        if name in gpu_steps:
            assert accelerator and accelerator.get("resourceCount", accelerator.get("count")) in ("1", 1), (
                name,
                task["resources"],
            )
            assert accelerator.get("resourceType", accelerator.get("type")) == "nvidia-tesla-a100"
        else:
            assert not accelerator, (name, task["resources"])

    # the schedule: the retrain pipeline (its one gate step) as a KFP recurring run on the cron
    assert recurring["cron_expression"] == "0 3 * * 1" and recurring["experiment_id"] == "experiment-retrain"
    gate = kfp_tasks(recurring["package"])
    assert (
        list(gate) == ["retrain_gate"]
        and gate["retrain_gate"]["image"] == image
        and not gate["retrain_gate"]["resources"].get("accelerator")
    )
