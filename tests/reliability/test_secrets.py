"""Keys planted in the teacher's and the judge's key variables reach their endpoints as bearer tokens and
nothing else: after a full run (bootstrap, training, evaluation, registration, promotion) and serving the
champion, neither key is in any store, artifact, cache, log or console line."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request
import uuid

import pytest

from empathy_distill.testing.loopback import LoopbackServer
from tests.conftest import REPO, SAMPLE_DATA
from tests.e2e.conftest import CLI
from tests.services import free_port, postgres_database, postgres_reason


def always_a(messages) -> str:
    return "Verdict: A"  # a position-biased judge: valid verdicts, a tie on average, so the demo's gate admits v1


def test_planted_keys_go_to_their_endpoints_and_nowhere_else(zen, tmp_path):
    with contextlib.ExitStack() as stack:
        reason = postgres_reason()
        history = None if reason else stack.enter_context(postgres_database("ed_secrets"))
        planted_keys_run(zen, tmp_path, history)
    if reason:
        pytest.skip(f"the keys held; the planted database password was not checked: {reason}")


def planted_keys_run(zen, tmp_path, history_db: str | None):
    from deploy.client import stop, wait_ready

    teacher_key, judge_key = f"sk-teacher-{uuid.uuid4().hex}", f"sk-judge-{uuid.uuid4().hex}"
    keys = {"EMPATHY_TEST_TEACHER_KEY": teacher_key, "EMPATHY_TEST_JUDGE_KEY": judge_key}
    secrets = list(keys.values())
    history = []
    if history_db:  # the promotion history on PostgreSQL, its URL with a password (trust auth ignores it)
        password = f"pw-{uuid.uuid4().hex}"
        secrets.append(password)
        history = ["--set", "registry.history=" + history_db.replace("postgres@", f"postgres:{password}@", 1)]
    zen("init")
    with LoopbackServer() as teacher, LoopbackServer(preferences=always_a) as judge:
        endpoint = (
            f"{{base_url: '{judge.base_url}', model: judge, api_key_env: EMPATHY_TEST_JUDGE_KEY, "
            f"cache_path: '{tmp_path / 'judge.sqlite'}'}}"
        )
        overrides = {
            "data.path": SAMPLE_DATA,
            "bootstrap.method": "improve_llm",
            "bootstrap.strategy": "all_three",
            "teacher.base_url": teacher.base_url,
            "teacher.api_key_env": "EMPATHY_TEST_TEACHER_KEY",
            "teacher.cache_path": tmp_path / "teacher.sqlite",
            "evaluation.judges": f"[{{name: loop, kind: llm, endpoint: {endpoint}}}]",
            "evaluation.opponents": "[base, human]",
        }
        args = [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]
        run = zen("distill", "--config", str(REPO / "configs" / "tiny.yaml"), *args, *history, extra_env=keys)
        # the always-A judge is inconsistent across orders: every comparison a tie, which the gate refuses
        assert "promotion: v1 not promoted (champion stays none)" in run.stdout, run.stdout
        assert teacher.bearer_tokens == {teacher_key: teacher.received} and teacher.received > 0
        assert judge.bearer_tokens == {judge_key: judge.received} and judge.received > 0

    demo = str(REPO / "configs" / "tiny.yaml")
    forced = zen("promote", "--config", demo, "--version", "1", "--force", "--reason", "a champion to serve", *history)
    assert "forced: v1 PROMOTED to champion (was none)" in forced.stdout, forced.stdout

    port = free_port()
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)],
            cwd=zen.work,
            env={**zen.env, **keys},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 180, server)
        chat = {"dataframe_records": [{"messages": [{"role": "user", "content": "I lost my job today."}]}]}
        request = urllib.request.Request(
            url + "/invocations", data=json.dumps(chat).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert resp.status == 200
    finally:
        stop(server.pid)

    scanned = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" and "zenml" in p.name for p in scanned)  # the ZenML store is among them
    assert (tmp_path / "teacher.sqlite") in scanned and (tmp_path / "serve.log") in scanned
    for key in secrets:
        assert not [p for p in scanned if key.encode() in p.read_bytes()], key
        assert key not in run.stdout + run.stderr + forced.stdout + forced.stderr
