"""Promotion under lock with compare-and-set, crash repair, rollback, racing promoters; the registered model served.

Everything runs against a real MLflow store (SQLite in tmp_path) and real processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from empathy_distill.registry.history import check_chain
from empathy_distill.registry.promotion import CRASH_ENV, Promotions
from tests.conftest import REPO
from tests.services import free_port, mlflow_server, postgres_database, postgres_reason

MODEL = "empathy-student"


@dataclass
class Registry:
    uri: str
    history: str | None
    p: Promotions
    model: str


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """An MLflow tracking server on a PostgreSQL database of its own (module-wide; each test uses its own model and
    history)."""
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("server")
    with (
        postgres_database("ed_mlflow") as backend,
        mlflow_server(backend, folder / "artifacts", folder / "server.log") as url,
    ):
        yield url


@pytest.fixture(params=["embedded", "server"])
def registry(request, tmp_path):
    """Five versions of a model (no weights: moving aliases needs none) and its promotion history and lock.

    embedded: the SQLite MLflow store, the history beside it, a file lock.
    server: the tracking server on PostgreSQL, the history in a PostgreSQL database, an advisory lock.
    """
    import mlflow

    if request.param == "embedded":
        uri, history, model = f"sqlite:///{tmp_path / 'mlflow.db'}", None, MODEL
        context = contextlib.nullcontext(None)
    else:
        uri, model = request.getfixturevalue("tracking_server"), f"{MODEL}-{uuid.uuid4().hex[:8]}"
        context = postgres_database("ed_history")
    with context as history_db:
        history = history_db or history
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.create_registered_model(model)
        for _ in range(5):
            client.create_model_version(model, source="s3://empathy-tests/no-weights")  # a server refuses local paths
        yield Registry(uri, history, Promotions.open(uri, history), model)


def test_promotion_moves_champion_and_records_every_decision(registry):
    p, model = registry.p, registry.model
    first = p.move_champion(model, "1", expected=None, promote=True, action="gate")
    assert first.promoted and first.previous is None and p.alias(model) == "1"
    refused = p.move_champion(
        model, "2", expected="1", promote=False, action="gate", reasons=["vs base: ci_low > 0.5 not met"]
    )
    assert not refused.promoted and refused.champion_after == "1" and p.alias(model) == "1"
    tags = p.client.get_model_version(model, "2").tags
    assert (
        tags["promotion.last_decision"] == "not promoted"
        and tags["promotion.last_reasons"] == "vs base: ci_low > 0.5 not met"
    )
    second = p.move_champion(model, "3", expected="1", promote=True, action="manual")
    assert second.previous == "1" and p.alias(model) == "3"
    entries = p.history.entries(model)
    assert [(e["version"], e["decision"]) for e in entries] == [
        ("1", "promoted"),
        ("2", "not promoted"),
        ("3", "promoted"),
    ]
    assert check_chain(entries, p.alias(model)) == []


def test_compare_and_set_refuses_a_decision_made_against_another_champion(registry):
    p, model = registry.p, registry.model
    p.move_champion(model, "1", expected=None, promote=True, action="gate")
    p.move_champion(model, "2", expected="1", promote=True, action="gate")
    # a run that started while v1 was champion and judged against it must not overwrite v2
    stale = p.move_champion(model, "3", expected="1", promote=True, action="gate")
    assert not stale.promoted and p.alias(model) == "2"
    assert stale.reasons == ["stale: champion moved from v1 to v2 since this decision was made; nothing changed"]


def test_rollback_walks_back_through_the_holders(registry):
    from empathy_distill.errors import ConfigError

    p, model = registry.p, registry.model
    with pytest.raises(ConfigError, match="has no champion"):
        p.rollback(model)
    for version, expected in (("1", None), ("2", "1"), ("3", "2")):
        p.move_champion(model, version, expected=expected, promote=True, action="gate")
    assert p.rollback(model, reason="complaints").champion_after == "2" and p.alias(model) == "2"
    assert p.rollback(model).champion_after == "1" and p.alias(model) == "1"  # a second rollback goes further back
    with pytest.raises(ConfigError, match="no earlier champion"):
        p.rollback(model)
    entries = p.history.entries(model)
    assert [e["action"] for e in entries] == ["gate", "gate", "gate", "rollback", "rollback"]
    assert entries[3]["reasons"] == ["rollback from v3: complaints"]
    assert check_chain(entries, p.alias(model)) == []


PROMOTE_IN_CHILD = """
import sys
from empathy_distill.registry.promotion import Promotions
uri, model, version, history = sys.argv[1:5]
p = Promotions.open(uri, history or None)
p.move_champion(model, version, expected=p.alias(model), promote=True, action="manual")
"""


def promote_v2_and_crash(registry, stage: str) -> subprocess.CompletedProcess:
    """Promotes v2 in a child process that dies like kill -9 at ``stage`` of the move."""
    env = {**os.environ, CRASH_ENV: stage, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", PROMOTE_IN_CHILD, registry.uri, registry.model, "2", registry.history or ""]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("stage, alias_after, status", [("after_alias", "2", "done"), ("before_alias", "1", "aborted")])
def test_a_crash_mid_promotion_is_repaired_by_the_next_one(registry, stage, alias_after, status):
    p, model = registry.p, registry.model
    p.move_champion(model, "1", expected=None, promote=True, action="gate")
    proc = promote_v2_and_crash(registry, stage)
    assert proc.returncode == 137, proc.stderr  # died like kill -9: no cleanup ran
    assert p.alias(model) == alias_after
    assert p.history.entries(model)[-1]["status"] == "pending"
    assert check_chain(p.history.entries(model), p.alias(model)) != []  # the crash left it inconsistent
    nxt = p.move_champion(model, "3", expected=alias_after, promote=True, action="gate")
    assert nxt.repaired and nxt.promoted
    entries = p.history.entries(model)
    assert entries[1]["status"] == status
    assert check_chain(entries, p.alias(model)) == []


def test_a_rollback_after_a_crash_between_alias_and_history_repairs_then_rolls_back(registry):
    p, model = registry.p, registry.model
    p.move_champion(model, "1", expected=None, promote=True, action="gate")
    proc = promote_v2_and_crash(registry, "after_alias")
    assert proc.returncode == 137 and p.alias(model) == "2"  # the alias moved, the history still says pending
    back = p.rollback(model, reason="the crash")
    assert back.repaired and back.promoted and p.alias(model) == "1"
    entries = p.history.entries(model)
    assert [e["status"] for e in entries] == ["done", "done", "done"]
    assert check_chain(entries, p.alias(model)) == []


def test_an_alias_moved_outside_the_tool_is_recorded_not_overwritten(registry):
    p, model = registry.p, registry.model
    p.move_champion(model, "1", expected=None, promote=True, action="gate")
    p.client.set_registered_model_alias(model, "champion", "4")  # someone used the MLflow UI
    entry = p.move_champion(model, "2", expected="1", promote=True, action="gate")
    assert not entry.promoted and p.alias(model) == "4"
    assert entry.repaired == ["alias moved outside the tool: v1 -> v4 recorded"]
    assert check_chain(p.history.entries(model), "4") == []


RACER = """
import random, sys
from empathy_distill.registry.promotion import Promotions
uri, model, seed, n, history = sys.argv[1:6]
p = Promotions.open(uri, history or None)
rng = random.Random(int(seed))
moved = 0
for i in range(int(n)):
    seen = p.alias(model)          # read ...
    target = str(rng.randint(1, 5))
    # ... then check-and-set
    e = p.move_champion(model, target, expected=seen, promote=True, action="manual", actor=f"racer{seed}")
    moved += e.promoted
print(moved)
"""


def test_two_processes_racing_50_promotions_each_stay_consistent(registry):
    p, model = registry.p, registry.model
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, registry.uri, model, str(seed), "50", registry.history or ""],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [o[1][-2000:] for o in outs]
    entries = p.history.entries(model)
    assert len(entries) == 100 and {e["actor"] for e in entries} == {"racer1", "racer2"}
    assert all(e["status"] == "done" for e in entries)
    assert check_chain(entries, p.alias(model)) == []
    moved = sum(int(o[0]) for o in outs)
    assert moved == sum(e["promoted"] for e in entries) and moved > 10
    for v in map(str, range(1, 6)):  # each version's MLflow page lists every decision about it, the last one tagged
        seqs = [e["seq"] for e in entries if e["version"] == v]
        mv = p.client.get_model_version(model, v)
        listed = [int(line.split()[1][1:]) for line in (mv.description or "").splitlines() if line.startswith("- #")]
        assert sorted(listed) == seqs and mv.tags.get("promotion.last_seq") == (str(seqs[-1]) if seqs else None), v
    print(
        f"race ({registry.p.history.__class__.__name__}, {registry.uri.split(':')[0]}): 100 decisions, {moved} "
        f"moves, {sum('stale' in ' '.join(e['reasons']) for e in entries)} refused as stale"
    )


def post(url: str, payload, timeout: float = 60) -> tuple[int, dict]:
    data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            return err.code, json.loads(body or b"{}")
        except ValueError:  # uvicorn's own 503 is plain text
            return err.code, {"text": body.decode(errors="replace")}


@pytest.fixture
def champion_model(tmp_path):
    """A tiny base + LoRA adapter registered as the real pyfunc model, holding champion."""
    from tests.tiny_model import register_tiny_versions

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (version,) = register_tiny_versions(tmp_path, uri, MODEL)
    Promotions.open(uri).move_champion(MODEL, version, expected=None, promote=True, action="manual")
    return uri


def test_the_registered_model_loads_offline_and_relocates_its_base(champion_model, tmp_path):
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(champion_model)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
        chat = pd.DataFrame({"messages": [[{"role": "user", "content": "I did not get the job."}]]})
        out = model.predict(chat)
        # the base can be pointed elsewhere at load time (a deployment with its own copy)
        moved = mlflow.pyfunc.load_model(
            f"models:/{MODEL}@champion", model_config={"base_source": "reference", "base_model": str(tmp_path / "base")}
        )
        assert moved.predict(chat)["response"].tolist() == out["response"].tolist()
        meta = model.metadata
        assert [i["name"] for i in meta.get_input_schema().to_dict()] == ["messages"]
        assert {p.name: p.default for p in meta.get_params_schema().params}["max_new_tokens"] == 8
        reqs = (Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}@champion")) / "requirements.txt").read_text()
        assert "torch==" in reqs and "peft==" in reqs and "torchvision" not in reqs
    finally:
        mlflow.set_tracking_uri(None)


def test_serve_answers_chats_refuses_malformed_ones_and_holds_under_load(champion_model, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": champion_model,
        "PYTHONPATH": str(REPO),
        "ZENML_CONFIG_PATH": str(tmp_path / "zen"),
    }
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (the server writes it until the test stops it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,  # its state (.cache/deploy: live.json, the downloaded versions) stays out of the repository
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        from deploy.client import wait_ready

        ready = wait_ready(url, 120, proc)
        chat = {
            "dataframe_records": [{"messages": [{"role": "user", "content": "My exam went badly and I feel awful."}]}],
            "params": {"max_new_tokens": 6},
        }
        status, body = post(url + "/invocations", chat)
        assert status == 200 and isinstance(body["predictions"][0]["response"], str)
        bad = {
            "not json": "{oops",
            "no messages": {"dataframe_records": [{"text": "hi"}]},
            "unknown role": {"dataframe_records": [{"messages": [{"role": "bot", "content": "hi"}]}]},
            "empty content": {"dataframe_records": [{"messages": [{"role": "user", "content": "  "}]}]},
            "assistant last": {
                "dataframe_records": [
                    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
                ]
            },
            "oversized chat": {"dataframe_records": [{"messages": [{"role": "user", "content": "word " * 5000}]}]},
            "too many tokens": {**chat, "params": {"max_new_tokens": 100000}},
            "wrong param type": {**chat, "params": {"max_new_tokens": "lots"}},
        }
        for name, payload in bad.items():
            status, body = post(url + "/invocations", payload)
            assert 400 <= status < 500, (name, status, body)

        # 200 requests, 8 at a time: none fails, the server is still up
        def one(i: int) -> tuple[int, float]:
            start = time.perf_counter()
            code, _ = post(
                url + "/invocations",
                {
                    "dataframe_records": [{"messages": [{"role": "user", "content": f"Day {i} was hard."}]}],
                    "params": {"max_new_tokens": 6},
                },
            )
            return code, time.perf_counter() - start

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(200)))
        errors = sum(code != 200 for code, _ in results)
        latencies = sorted(t for _, t in results)
        p50, p99 = statistics.median(latencies) * 1000, latencies[int(0.99 * len(latencies)) - 1] * 1000
        print(
            f"serve: ready in {ready:.1f} s; 200 requests at concurrency 8: {errors} errors, p50 {p50:.0f} ms, p99 "
            f"{p99:.0f} ms"
        )
        assert errors == 0
        assert proc.poll() is None and urllib.request.urlopen(url + "/health", timeout=5).status == 200

        # a burst beyond the server's limit (registry.deploy.max_concurrency, 32): 429 at once, never queued or dropped
        with ThreadPoolExecutor(64) as pool:
            burst = Counter(code for code, _ in pool.map(one, range(128)))
        print(f"serve: a burst of 128 requests 64 at a time: {dict(burst)}")
        assert set(burst) <= {200, 429} and burst[429] > 0 and burst[200] > 0, burst
        assert proc.poll() is None and urllib.request.urlopen(url + "/health", timeout=5).status == 200
    finally:
        from deploy.client import stop

        stop(proc.pid)
        log.close()


def test_serve_without_a_champion_is_one_clear_line(tmp_path):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}",
        "PYTHONPATH": str(REPO),
        "ZENML_CONFIG_PATH": str(tmp_path / "zen"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: models:/{MODEL}@champion: no such version or alias in the registry")
    )


def test_deploy_keeps_one_address_and_follows_the_alias(champion_model, tmp_path):
    """The deploy step's mechanism: the first deploy starts the server; the next one, after the alias moved, finds it
    at the same address and returns once it serves the new champion (no second server, no second port)."""
    import mlflow

    from deploy.client import live, serve_champion, stop
    from empathy_distill.config import DeployConfig

    client = mlflow.MlflowClient(tracking_uri=champion_model, registry_uri=champion_model)
    v1 = client.get_model_version(MODEL, "1")
    mlflow.set_tracking_uri(champion_model)  # the source (a logged model) resolves against the global URI
    try:
        client.create_model_version(
            MODEL, source=v1.source, run_id=v1.run_id, model_id=v1.model_id
        )  # a second version to switch to
    finally:
        mlflow.set_tracking_uri(None)
    port = free_port()
    state = tmp_path / "deploy"
    cfg = DeployConfig(port=port, state_dir=str(state), poll_s=0.5)
    first = serve_champion(MODEL, "1", champion_model, cfg)
    try:
        assert first.version == "1" and first.started and live(state)["pid"] == first.pid
        Promotions.open(champion_model).move_champion(MODEL, "2", expected="1", promote=True, action="manual")
        second = serve_champion(MODEL, "2", champion_model, cfg)
        assert second.url == first.url and second.pid == first.pid and not second.started
        assert live(state)["version"] == "2" and live(state)["routes"]["champion"] == "2"
        _, body = post(first.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi."}]})
        assert body["model"] == f"{MODEL}/2"
    finally:
        stop(first.pid)


def test_lineage_of_a_version_registered_by_hand_says_what_is_missing(registry):
    from empathy_distill.registry.lineage import audit, audit_lines

    p, model = registry.p, registry.model
    chain = audit(p.client, p.history, f"models:/{model}/2")  # created without a run or any lineage tag
    assert chain["version"]["version"] == "2"
    assert (
        "version tag lineage.data_hash" in chain["missing"]
        and "the MLflow run (the version names none)" in chain["missing"]
    )
    assert audit_lines(chain)[-1].startswith("  missing:      version tag lineage.data_path; ")
    with pytest.raises(ValueError, match="not found in the registry"):
        audit(p.client, p.history, f"models:/{model}@champion")  # no champion yet
    with pytest.raises(ValueError, match="is not models:/NAME@ALIAS or models:/NAME/VERSION"):
        audit(p.client, p.history, "runs:/abc/model")


def test_a_downloaded_version_is_reused_only_for_the_same_store(tmp_path, monkeypatch):
    """v1 of one name in two stores (a store deleted and started afresh): the download cache never answers the
    second with the first's model."""
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils

    from empathy_distill.serving.pool import download
    from tests.tiny_model import register_tiny_versions

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    cache = tmp_path / "versions"
    adapters = []
    for seed, store in ((1, "a"), (2, "b")):
        (tmp_path / store).mkdir()
        uri = f"sqlite:///{tmp_path / store / 'mlflow.db'}"
        register_tiny_versions(tmp_path / store, uri, "same-name", seeds=(seed,))
        folder = download("same-name", "1", uri, cache)
        adapters.append(next(folder.rglob("adapter_model.safetensors")).read_bytes())
        assert download("same-name", "1", uri, cache) == folder  # the same store: reused
    mlflow.set_tracking_uri(None)
    assert adapters[0] != adapters[1]


def test_a_download_leaves_the_process_registry_uri_as_it_found_it(tmp_path, monkeypatch):
    """models:/ needs the global registry URI pointed at the version's store during the download; left there (and in
    MLFLOW_REGISTRY_URI, which children inherit) a later pipeline registered in one store and promoted in another."""
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils

    from empathy_distill.serving.pool import download
    from tests.tiny_model import register_tiny_versions

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    register_tiny_versions(tmp_path, uri, "left-alone", seeds=(1,))
    mlflow.set_tracking_uri(None)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    assert (download("left-alone", "1", uri, tmp_path / "versions") / "MLmodel").exists()
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert registry_utils._registry_uri is None
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:///elsewhere.db")
    monkeypatch.setattr(registry_utils, "_registry_uri", "sqlite:///elsewhere.db")
    download("left-alone", "1", uri, tmp_path / "again")
    assert os.environ["MLFLOW_REGISTRY_URI"] == registry_utils._registry_uri == "sqlite:///elsewhere.db"
