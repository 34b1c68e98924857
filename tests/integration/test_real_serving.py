"""The server on a real model (SmolLM2-135M-Instruct from PyPI): streams through the ``openai`` client, clients that
go away, and the admission limit for streams.

The version is the real base with an all-zero adapter (it answers as the base), so the in-process
reference is ``generate()`` on the loaded base, one chat at a time. The server runs with a limit
of two requests inside at once.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.request

import pytest

from empathy_distill.config import GenerationSettings
from empathy_distill.training.generate import generate
from tests.real_models import SYSTEM, mlflow_store, register_base
from tests.services import free_port

PRESET = "smollm2-135m-instruct"
MODEL = "real-served"
LIMIT = 2
ASKED = [
    "My dog died yesterday and I can't stop crying.",
    "I finally passed my driving test after three tries!",
    "Réponds en français, s'il te plaît : mon meilleur ami déménage à Montréal 😢",
]


@pytest.fixture(scope="module")
def real_server(real_folder, loaded, tmp_path_factory):
    from deploy.client import start, stop, wait_ready
    from empathy_distill.config import DeployConfig
    from empathy_distill.registry.promotion import Promotions

    folder, _ = real_folder(PRESET)
    tokenizer, model, fmt = loaded(PRESET)
    tmp = tmp_path_factory.mktemp("real-served")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with mlflow_store(tmp):
        info = register_base(folder, tmp, model, MODEL, max_new_tokens=48)
    Promotions.open(uri).move_champion(
        MODEL, str(info.registered_model_version), expected=None, promote=True, action="manual"
    )
    port = free_port()
    proc = start(MODEL, uri, DeployConfig(port=port, state_dir=str(tmp / "deploy"), max_concurrency=LIMIT, poll_s=5))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 300, proc)
        yield {"url": url, "tokenizer": tokenizer, "model": model, "fmt": fmt, "pid": proc.pid}
    finally:
        stop(proc.pid)
        print((tmp / "deploy" / "server.log").read_text()[-3000:])


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=10) as resp:
        return json.loads(resp.read())


def engine_stats(url: str) -> dict:
    (stats,) = health(url)["engines"].values()
    return stats


def open_stream(url: str, text: str, max_tokens: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "stream": True}
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    return conn, conn.getresponse()


def first_text(resp: http.client.HTTPResponse) -> str:
    """Reads events until one carries reply text."""
    while True:
        line = resp.readline().decode().strip()
        if line.startswith("data: {"):
            delta = json.loads(line[6:])["choices"][0]["delta"]
            if delta.get("content"):
                return delta["content"]


def test_the_real_model_streams_what_it_answers_whole_and_in_process(real_server):
    import openai

    client = openai.OpenAI(base_url=real_server["url"] + "/v1", api_key="not-needed", max_retries=0)
    settings = GenerationSettings(max_new_tokens=48)
    for text in ASKED:
        chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
        local = generate(
            real_server["model"], real_server["tokenizer"], [chat], settings, fmt=real_server["fmt"], progress=False
        )[0]
        ask = {"model": "champion", "messages": [{"role": "user", "content": text}], "max_tokens": 48}
        whole = client.chat.completions.create(**ask, temperature=0)
        chunks = list(client.chat.completions.create(**ask, temperature=0, stream=True))
        pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        print(f"{text[:40]!r} -> {len(pieces)} chunks: {''.join(pieces)!r}")
        assert all("\ufffd" not in p for p in pieces)
        assert "".join(pieces) == whole.choices[0].message.content == local.text
        assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason == local.finish_reason
        assert whole.usage.completion_tokens == local.completion_tokens


def test_a_client_that_goes_away_frees_its_place_and_its_row_within_a_step(real_server):
    url = real_server["url"]
    story = "Tell me a long, gentle story about a lighthouse keeper who is lonely."
    streams = [open_stream(url, story, 400) for _ in range(LIMIT)]
    for _, resp in streams:
        assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
        assert first_text(resp)
    refused_conn, refused = open_stream(url, story, 400)  # a third stream: over the limit
    assert refused.status == 429 and int(refused.getheader("Retry-After")) >= 1
    assert json.loads(refused.read())["error"]["code"] == "rate_limit_exceeded"
    refused_conn.close()

    assert health(url)["inside"] == LIMIT
    deadline = time.monotonic() + 30
    while (before := engine_stats(url))["running"] < LIMIT:  # the second chat's first text can precede its join
        assert time.monotonic() < deadline, before
        time.sleep(0.02)
    closed_at = time.monotonic()  # the machine's monotonic clock: the server's records use the same one
    streams[0][0].sock.close()
    streams[0][0].close()
    deadline = time.monotonic() + 60
    while engine_stats(url)["cancelled"] == before["cancelled"]:
        assert time.monotonic() < deadline, "the server never noticed the client went away"
        time.sleep(0.05)
    after = engine_stats(url)
    cancel = after["cancels"][-1]
    print(
        f"client gone -> cancel {cancel['cancelled_at'] - closed_at:.3f} s, "
        f"row out {cancel['removed_at'] - closed_at:.3f} s; decoding steps of {after['step_seconds']:.3f} s; "
        f"steps begun between close and removal <= {cancel['step'] - before['steps']}"
    )
    assert cancel["cancelled_at"] >= closed_at and cancel["steps_between"] <= 1
    assert cancel["step"] - before["steps"] <= 2  # the step under way when the client left, and at most one more
    assert after["running"] == LIMIT - 1 and health(url)["inside"] == LIMIT - 1
    conn, resp = open_stream(url, "Thank you.", 8)  # the place is free again
    assert resp.status == 200 and b"data: [DONE]" in resp.read()
    conn.close()
    streams[1][0].close()


def test_serve_base_answers_as_the_plain_model_over_the_same_api(real_cache, real_folder, loaded, tmp_path):
    """``serve --base smollm2-135m-instruct``: the packaged model alone, no registry and no key, behind the same API
    (the GGUF's dequantised folder is found in the cache by its sha256: no second conversion); greedy replies,
    whole and streamed, are the in-process ones; a malformed request is a 4xx in OpenAI's shape."""
    import os

    import openai

    from deploy.client import start_base, stop, wait_ready

    real_folder(PRESET)  # converted once per session, into real_cache
    tokenizer, model, fmt = loaded(PRESET)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["ZENML_CONFIG_PATH"] = str(tmp_path / "zen")
    cache = [f"--set=student.cache_dir={real_cache}"]
    proc = start_base(PRESET, port, tmp_path / "serve.log", tmp_path, cache, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 300, proc)
        client = openai.OpenAI(base_url=url + "/v1", api_key="not-needed", max_retries=0)
        assert [m.id for m in client.models.list().data] == [PRESET]
        for text in ASKED[:2]:
            chat = [{"role": "user", "content": text}]
            local = generate(model, tokenizer, [chat], GenerationSettings(max_new_tokens=32), fmt=fmt, progress=False)
            ask = {"model": "whatever-the-client-names", "messages": chat, "max_tokens": 32, "temperature": 0}
            whole = client.chat.completions.create(**ask)
            chunks = client.chat.completions.create(**ask, stream=True)
            streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert whole.choices[0].message.content == streamed == local[0].text
            assert whole.model == f"{PRESET}/base" and whole.usage.completion_tokens == local[0].completion_tokens
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="x", messages=[{"role": "bot", "content": "hi"}])
        body = health(url)
        assert body["base"]["gguf"]["sha256"] and body["base"]["reused"] is True  # the session's conversion, found
        assert body["engines"]["base"]["decoder"] == "packed"
    finally:
        stop(proc.pid)
        print((tmp_path / "serve.log").read_text()[-3000:])
    assert not (tmp_path / ".cache" / "students").exists()  # the cached conversion was used


def test_serve_base_with_a_model_that_is_not_one_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO), "ZENML_CONFIG_PATH": str(tmp_path / "zen")}
    (tmp_path / "empty").mkdir()
    for base, message in [
        ("nonsense", "--base nonsense: not a preset, a .gguf file, a model folder or a hub id"),
        (str(tmp_path / "empty"), f"--base {tmp_path / 'empty'}:"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--base", base, "--port", str(free_port())],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 2, done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {message}") and "Traceback" not in done.stderr
