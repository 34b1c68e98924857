"""The stable server (deploy/server.py) against registered tiny versions: the OpenAI client, OpenAI-shaped 4xx for
malformed and oversized requests, 429 with Retry-After beyond the limit, and replies that follow the champion
alias through promote -> rollback -> promote with no failed request.

One server for the module (loading takes seconds); the tests run in file order and the last one moves the alias.
"""

from __future__ import annotations

import http.client
import json
import shlex
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from empathy_distill.registry.promotion import Promotions
from tests.conftest import REPO
from tests.services import free_port

MODEL = "empathy-student"
POLL_S = 0.5
MAX_CONCURRENCY = 8
SWITCH_BOUND_S = POLL_S + 10.0
"""A move of the alias is served within one poll plus the load of a version not yet held (docs/registry.md)."""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Versions 1 (champion) and 2 (challenger) of a tiny model, and the server at one port."""
    import mlflow

    from deploy.client import start, stop, wait_ready, wait_serving
    from empathy_distill.config import DeployConfig
    from tests.tiny_model import register_tiny_versions

    tmp = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    v1, v2 = register_tiny_versions(tmp, uri, MODEL, seeds=(1, 2))
    p = Promotions.open(uri)
    p.move_champion(MODEL, v1, expected=None, promote=True, action="manual")
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(MODEL, "challenger", v2)
    port = free_port()
    cfg = DeployConfig(port=port, state_dir=str(tmp / "deploy"), max_concurrency=MAX_CONCURRENCY, poll_s=POLL_S)
    proc = start(MODEL, uri, cfg)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 120, proc)
        wait_serving(url, v2, 60, route="challenger")
        yield {"url": url, "uri": uri, "p": p, "v1": v1, "v2": v2, "tmp": tmp, "proc": proc}
    finally:
        stop(proc.pid)
        print((tmp / "deploy" / "server.log").read_text()[-3000:])


def raw(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    """A request as bytes, exactly as given (no Content-Type unless named): status, JSON body, headers."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def chat(url: str, payload: dict) -> tuple[int, dict, dict]:
    return raw(url, "/v1/chat/completions", json.dumps(payload).encode(), {"Content-Type": "application/json"})


def test_the_openai_client_talks_to_champion_challenger_and_a_version(served):
    import openai
    from transformers import AutoTokenizer

    client = openai.OpenAI(base_url=served["url"] + "/v1", api_key="not-needed", max_retries=0)
    text = "I did not get the job and I feel useless."
    champion = client.chat.completions.create(
        model="champion", messages=[{"role": "user", "content": text}], max_tokens=6, temperature=0
    )
    # the registered system prompt goes first, then the base's own chat template: usage counts those tokens
    tokenizer = AutoTokenizer.from_pretrained(served["tmp"] / "base")
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Answer kindly."}, {"role": "user", "content": text}],
        add_generation_prompt=True,
        tokenize=False,
    )
    prompt = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    reply = champion.choices[0].message
    assert champion.model == f"{MODEL}/{served['v1']}" and reply.role == "assistant" and reply.content
    assert champion.usage.prompt_tokens == len(prompt)
    assert 1 <= champion.usage.completion_tokens <= 6
    assert champion.usage.total_tokens == champion.usage.prompt_tokens + champion.usage.completion_tokens
    assert champion.choices[0].finish_reason in ("stop", "length")
    assert champion.usage.completion_tokens == 6 or champion.choices[0].finish_reason == "stop"

    challenger = client.chat.completions.create(model="challenger", messages=[{"role": "user", "content": text}])
    assert challenger.model == f"{MODEL}/{served['v2']}"
    assert challenger.usage.completion_tokens <= 8  # the registered default, max_new_tokens 8
    by_number = client.chat.completions.create(
        model=served["v2"], messages=[{"role": "user", "content": text}], max_tokens=6, temperature=0
    )
    again = client.chat.completions.create(
        model=f"{MODEL}@challenger", messages=[{"role": "user", "content": text}], max_tokens=6, temperature=0
    )
    assert by_number.model == again.model == challenger.model
    assert by_number.choices[0].message.content == again.choices[0].message.content  # greedy: one version, one reply

    listed = {m.id for m in client.models.list().data}
    assert {"champion", "challenger", f"{MODEL}/{served['v1']}", f"{MODEL}/{served['v2']}"} <= listed
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="v99", messages=[{"role": "user", "content": text}])
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as long_chat:
        client.chat.completions.create(model="champion", messages=[{"role": "user", "content": "word " * 3000}])
    assert long_chat.value.body["code"] == "context_length_exceeded"
    assert "context is 256 tokens" in long_chat.value.body["message"]


def test_a_stream_through_the_openai_client_adds_up_to_the_reply(served):
    import openai

    client = openai.OpenAI(base_url=served["url"] + "/v1", api_key="not-needed", max_retries=0)
    for model in ("champion", "challenger"):
        for text in ("My exam went badly and I cannot stop thinking about it.", "Hi."):
            ask = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 40, "temperature": 0}
            whole = client.chat.completions.create(**ask)
            chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
            assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].model == whole.model
            pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
            finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            assert "".join(pieces) == whole.choices[0].message.content, (model, text)
            assert finish == [whole.choices[0].finish_reason]
            assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
            assert all(c.usage is None for c in chunks[:-1]) and len({c.id for c in chunks}) == 1


def test_malformed_and_oversized_requests_get_openai_shaped_4xx(served):
    url = served["url"]
    user = [{"role": "user", "content": "My cat is ill."}]
    ten_thousand = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i}"} for i in range(9_999)] + user
    cases = {
        "empty body, no content type": (b"", {}),
        "not JSON": (b"{oops", {"Content-Type": "application/json"}),
        "JSON 5,000 deep": (b"[" * 5000 + b"]" * 5000, {"Content-Type": "application/json"}),
        "a list, not an object": (b"[1, 2]", {"Content-Type": "application/json"}),
        "over 1 MiB": (json.dumps({"messages": user, "pad": "x" * 1_100_000}).encode(), {}),
    }
    bodies = {
        "no messages": {"model": "champion"},
        "messages not a list": {"messages": "hello"},
        "10,000 messages": {"messages": ten_thousand},
        "unknown role": {"messages": [{"role": "bot", "content": "hi"}]},
        "empty content": {"messages": [{"role": "user", "content": "  "}]},
        "assistant last": {"messages": [*user, {"role": "assistant", "content": "oh no"}]},
        "content a number": {"messages": [{"role": "user", "content": 7}]},
        "max_tokens a word": {"messages": user, "max_tokens": "lots"},
        "max_tokens 0": {"messages": user, "max_tokens": 0},
        "max_tokens beyond the context": {"messages": user, "max_tokens": 1000},
        "temperature 9": {"messages": user, "temperature": 9},
        "top_p 0": {"messages": user, "top_p": 0},
        "stream a word": {"messages": user, "stream": "yes"},
        "stream beyond the context": {"messages": user, "stream": True, "max_tokens": 1000},  # a 400, not a stream
        "stream_options without stream": {"messages": user, "stream_options": {"include_usage": True}},
        "n 2": {"messages": user, "n": 2},
        "unknown model": {"model": "nobody", "messages": user},
    }
    for name, body in bodies.items():
        cases[name] = (json.dumps(body).encode(), {"Content-Type": "application/json"})
    seen = {}
    for name, (body, headers) in cases.items():
        status, answer, _ = raw(url, "/v1/chat/completions", body, headers)
        seen[name] = status
        assert 400 <= status < 500, (name, status, answer)
        error = answer["error"]
        assert set(error) >= {"message", "type", "param", "code"} and error["message"], (name, answer)
    assert seen["over 1 MiB"] == 413 and seen["unknown model"] == 404
    _, long, _ = chat(url, {"messages": user, "max_tokens": 1000})
    assert long["error"]["code"] == "context_length_exceeded" and "256" in long["error"]["message"]
    _, many, _ = chat(url, {"messages": ten_thousand})
    assert "10000 messages" in many["error"]["message"] and many["error"]["param"] == "messages"

    # MLflow's /invocations answers the champion and keeps its own error shape; the hidden kinds are 4xx there too
    records = json.dumps({"dataframe_records": [{"messages": ten_thousand}]}).encode()
    for body, headers in [
        (b"", {}),
        (b"[" * 5000 + b"]" * 5000, {"Content-Type": "application/json"}),
        (b"a,b\n1,2", {"Content-Type": "text/csv"}),
        (records, {"Content-Type": "application/json"}),
    ]:
        status, answer, _ = raw(url, "/invocations", body, headers)
        assert 400 <= status < 500 and answer["error_code"] == "BAD_REQUEST", (status, answer)
    ok, answer, headers = raw(url, "/invocations", json.dumps({"dataframe_records": [{"messages": user}]}).encode(), {})
    assert ok == 200 and answer["predictions"][0]["response"] and headers["x-model-version"] == served["v1"]


def test_beyond_the_concurrency_limit_429_with_retry_after_and_the_server_holds(served):
    url = served["url"]

    def one(i: int) -> tuple[int, dict, dict]:
        return chat(url, {"messages": [{"role": "user", "content": f"Day {i} was hard."}], "max_tokens": 24})

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(128)))
    codes = Counter(status for status, _, _ in results)
    print(f"serve: 128 chats 64 at a time, limit {MAX_CONCURRENCY}: {dict(codes)}")
    assert set(codes) <= {200, 429} and codes[429] > 0 and codes[200] >= MAX_CONCURRENCY, codes
    for status, body, headers in results:
        if status == 429:
            assert int(headers["retry-after"]) >= 1 and body["error"]["code"] == "rate_limit_exceeded"
    assert urllib.request.urlopen(url + "/health", timeout=5).status == 200


def test_deploy_vllm_prints_the_command_for_champion_and_challenger(served, tmp_path):
    env = {
        **__import__("os").environ,
        "MLFLOW_TRACKING_URI": served["uri"],
        "PYTHONPATH": str(REPO),
        "ZENML_CONFIG_PATH": str(tmp_path / "zen"),
    }
    out = tmp_path / "vllm"
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "deploy", "vllm", "--download", str(out), "--port", "8011"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    champion = json.loads(urllib.request.urlopen(served["url"] + "/health", timeout=5).read())["routes"]
    c, h = champion["champion"], champion["challenger"]
    text = proc.stdout
    assert f"# {MODEL}: @champion = v{c} (LoRA rank 4), @challenger = v{h} (LoRA rank 4)" in text
    command = text[text.index("vllm serve") :]
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:3] == ["vllm", "serve", str(out / f"{MODEL}-v{c}" / "artifacts" / "base")]
    options = " ".join(argv[3:])
    modules = argv[argv.index("--lora-modules") + 1 : argv.index("--lora-modules") + 3]
    assert [m.split("=")[0] for m in modules] == ["champion", "challenger"]
    assert modules[0].startswith(f"champion={out / f'{MODEL}-v{c}' / 'artifacts'}/")
    assert modules[1].startswith(f"challenger={out / f'{MODEL}-v{h}' / 'artifacts'}/")
    assert "--enable-lora --max-loras 2 --max-lora-rank 8" in options  # rank 4 rounded up to vLLM's smallest, 8
    assert f"--served-model-name {MODEL} --host 0.0.0.0 --port 8011 --dtype float32" in options
    assert '--override-generation-config {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0}' in options
    assert "--chat-template" not in options  # the bundled base has its own template
    for module in modules:
        adapter = Path(module.split("=", 1)[1])
        assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    assert (Path(argv[2]) / "config.json").exists()
    assert command.strip() in (out / "serve.sh").read_text()
    assert (out / "system_prompt.txt").read_text() == "Answer kindly."


def test_replies_follow_the_champion_through_promote_rollback_promote_with_no_failed_request(served):
    from deploy.loadtest import LoadLoop

    url, p, v1, v2 = served["url"], served["p"], served["v1"], served["v2"]
    loop = LoadLoop(url, clients=MAX_CONCURRENCY, max_tokens=6).start()
    try:
        time.sleep(2)
        loop.mark(v2)  # before the move: the router may switch while the move's registry writes still run
        p.move_champion(MODEL, v2, expected=v1, promote=True, action="manual")  # what `promote` does past the gate
        loop.wait_for(v2, SWITCH_BOUND_S + 5)
        time.sleep(2)
        loop.mark(v1)
        assert p.rollback(MODEL, actor="test", reason="switch test").champion_after == v1
        loop.wait_for(v1, SWITCH_BOUND_S + 5)
        time.sleep(2)
        loop.mark(v2)
        p.move_champion(MODEL, v2, expected=v1, promote=True, action="manual")
        loop.wait_for(v2, SWITCH_BOUND_S + 5)
        time.sleep(2)
    finally:
        loop.stop()
    summary = loop.summary()
    print(f"switch: {json.dumps(summary)}")
    assert summary["failures"] == 0, summary["failure_samples"]
    assert summary["requests"] > 50
    assert [m["to"] for m in summary["moves"]] == [v2, v1, v2]
    for move in summary["moves"]:
        assert move["lag_s"] is not None and move["lag_s"] <= SWITCH_BOUND_S, move
        assert move["stale_after_switch"] == 0, move  # once the new version answered, the old one never again
    health = json.loads(urllib.request.urlopen(url + "/health", timeout=5).read())
    assert health["routes"]["champion"] == v2 and [s["new"] for s in health["switches"][-3:]] == [v2, v1, v2]


def test_the_pool_serves_in_the_dtype_asked_and_merges_a_lone_adapter(tmp_path):
    """``deploy.dtype: bfloat16`` loads the base in bfloat16 whatever the version registered; a base holding one
    version serves its adapter merged, and a second version on the same base unmerges it."""
    import torch

    from empathy_distill.serving.pool import Pool
    from tests.tiny_model import register_tiny_versions

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    v1, v2 = register_tiny_versions(tmp_path, uri, MODEL, seeds=(1, 2))
    chat = [{"role": "user", "content": "My cat is sick."}]
    pool = Pool(MODEL, uri, tmp_path / "versions", dtype="bfloat16")
    try:
        first = pool.ensure(v1)
        weights = {p.dtype for n, p in first.base.model.named_parameters() if "lora_" not in n}
        assert weights == {torch.bfloat16}
        assert pool.submit(first, chat, 8, {}).future.result(60).completion_tokens > 0
        assert pool.stats()[first.adapter]["merged"] == [first.adapter]
        second = pool.ensure(v2)
        assert second.base is first.base
        assert pool.submit(second, chat, 8, {}).future.result(60).completion_tokens > 0
        assert next(iter(pool.stats().values()))["merged"] == []
    finally:
        pool.close()


def test_the_pool_serves_int8_weights_through_the_packed_pass(tmp_path):
    """``deploy.dtype: int8``: the base in bfloat16, the engine's pass multiplying int8 weights (the tiny student is a
    Llama); a reply comes back and the stats say which pass served it."""
    import torch

    from empathy_distill.serving.pool import Pool
    from tests.tiny_model import register_tiny_versions

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (v1,) = register_tiny_versions(tmp_path, uri, MODEL, seeds=(1,))
    pool = Pool(MODEL, uri, tmp_path / "versions", dtype="int8")
    try:
        version = pool.ensure(v1)
        assert {p.dtype for n, p in version.base.model.named_parameters() if "lora_" not in n} == {torch.bfloat16}
        reply = pool.submit(version, [{"role": "user", "content": "My cat is sick."}], 8, {}).future.result(60)
        stats = pool.stats()[version.adapter]
    finally:
        pool.close()
    assert reply.completion_tokens > 0
    assert stats["decoder"] == "packed, int8 weights" and stats["packed_builds"] == 1
