"""A loopback OpenAI-compatible server for tests and benchmarks (real HTTP on 127.0.0.1).

Serves ``POST /v1/chat/completions``, the files API (``POST /v1/files``,
``GET /v1/files/{id}/content``) and the batch API (``POST /v1/batches``,
``GET /v1/batches/{id}``). Replies are deterministic functions of the request.
Latency is log-normal with a configurable mean; faults can be scripted (the next
N requests) or drawn at a rate: ``429`` (with ``Retry-After``), ``500``, ``hang``
(past the client's timeout), ``malformed`` (invalid JSON), ``empty`` (no content),
``drop`` (connection closed). Counters record what arrived and what completed.

    with LoopbackServer(latency_mean_s=0.2) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="x")
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import threading
import time
from collections import Counter, deque
from typing import Any

FAULTS = ("429", "500", "hang", "malformed", "empty", "drop")

_OPENERS = ["That sounds", "It sounds", "I can tell it feels", "It must feel"]
_FEELINGS = ["really hard", "so unsettling", "painful", "exhausting", "frightening", "lonely", "overwhelming", "heavy"]
_MIDDLES = [
    "and it makes sense that you feel this way",
    "and anyone in your place would feel the same",
    "and your reaction is completely understandable",
    "and I am glad you shared it with me",
]
_SUPPORT = [
    "Would it help to talk through what might come next?",
    "I am here for you if you want to say more.",
    "Maybe a small step today could ease some of the weight.",
    "Please be gentle with yourself while this settles.",
]


def body_key(body: dict[str, Any]) -> str:
    """The server's own request identity (model, messages and generation settings)."""
    keep = {k: body.get(k) for k in ("model", "messages", "temperature", "max_tokens", "seed")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def scripted_reply(messages: list[dict[str, str]]) -> str:
    """A deterministic, word-like reply that depends on every message."""
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()
    last = messages[-1]["content"] if messages else ""
    opener, feeling, middle, support = (
        _OPENERS[digest[0] % 4],
        _FEELINGS[digest[1] % 8],
        _MIDDLES[digest[2] % 4],
        _SUPPORT[digest[3] % 4],
    )
    if "Which response is more empathetic" in last:  # the judge template: a deterministic verdict
        return "Verdict: " + ("A", "B", "tie")[digest[5] % 3]
    if "Write your reply" in last:  # the initial-response template
        return f"Oh, {feeling.split()[-1]} times. {support}"
    text = f"{opener} {feeling}, {middle}. {support}"
    if "Weakest:" in last:
        dim = ("cognitive", "affective", "compassionate")[digest[4] % 3]
        return f"Weakest: {dim}\nImproved response: {text}"
    return f'Improved response: "{text}"'


class LoopbackServer:
    """An aiohttp server in a background thread; use as a context manager."""

    def __init__(
        self,
        latency_mean_s: float = 0.0,
        latency_sigma: float = 0.6,
        seed: int = 0,
        faults: list[str] | None = None,
        fault_rates: dict[str, float] | None = None,
        retry_after_s: float = 0.05,
        hang_s: float = 30.0,
        batch_polls_before_done: int = 1,
        preferences: Any = None,
        rate_limit_per_s: float | None = None,
        rate_burst: int = 10,
        latency_per_prompt: bool = False,
    ) -> None:
        for fault in list(faults or []) + list((fault_rates or {}).keys()):
            if fault not in FAULTS:
                raise ValueError(f"unknown fault '{fault}'; choose from {FAULTS}")
        self.latency_mean_s = latency_mean_s
        self.latency_sigma = latency_sigma
        # the same messages get the same latency, whichever client sends them and when: benchmarks that
        # compare two clients on the same requests then compare the clients, not two latency draws
        self.latency_per_prompt = latency_per_prompt
        self.seed = seed
        self.faults: deque[str] = deque(faults or [])
        self.fault_rates = dict(fault_rates or {})
        self.retry_after_s = retry_after_s
        self.hang_s = hang_s
        self.batch_polls_before_done = batch_polls_before_done
        self.reply_fn = preferences or scripted_reply
        # a rate limit as real endpoints enforce one: a token bucket; beyond it, 429 with retry-after-ms at once
        self.rate_limit_per_s = rate_limit_per_s
        self.rate_burst = rate_burst
        self._tokens = float(rate_burst)
        self._refilled = time.monotonic()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.received = 0
        self.bearer_tokens: Counter[str] = Counter()  # what clients sent as ``Authorization: Bearer``
        self.completed: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._batch_polls: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner = None
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LoopbackServer:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start_app())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="loopback-openai", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("loopback server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        with contextlib.suppress(Exception):  # shutting down anyway
            fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    async def _start_app(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=256 * 1024**2)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{file_id}/content", self._file_content)
        app.router.add_get("/v1/files/{file_id}", self._file_info)
        app.router.add_post("/v1/batches", self._create_batch)
        app.router.add_get("/v1/batches/{batch_id}", self._get_batch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    # ------------------------------------------------------------------- helpers

    def _latency(self, messages: Any = None) -> float:
        if self.latency_mean_s <= 0:
            return 0.0
        mu = math.log(self.latency_mean_s) - self.latency_sigma**2 / 2  # so the mean is latency_mean_s
        if self.latency_per_prompt:
            draw = random.Random(f"{self.seed}:{json.dumps(messages, sort_keys=True)}")  # str seeds are stable
            return draw.lognormvariate(mu, self.latency_sigma)
        with self._lock:
            return self._rng.lognormvariate(mu, self.latency_sigma)

    def _admit(self) -> float:
        """0 when the rate limit lets this request in, else the seconds until it would."""
        if self.rate_limit_per_s is None:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.rate_burst), self._tokens + (now - self._refilled) * self.rate_limit_per_s)
            self._refilled = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate_limit_per_s

    def _next_fault(self) -> str | None:
        with self._lock:
            if self.faults:
                return self.faults.popleft()
            for fault, rate in self.fault_rates.items():
                if self._rng.random() < rate:
                    return fault
        return None

    def completion(self, body: dict[str, Any], content: str | None = None) -> dict[str, Any]:
        messages = body.get("messages", [])
        text = self.reply_fn(messages) if content is None else content
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return {
            "id": "chatcmpl-" + body_key(body)[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "loopback"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_tokens + len(text.split()),
            },
        }

    # ------------------------------------------------------------------ handlers

    async def _chat(self, request):
        from aiohttp import web

        body = await request.json()
        with self._lock:
            self.received += 1
            self.bearer_tokens[request.headers.get("Authorization", "").removeprefix("Bearer ")] += 1
        wait = self._admit()
        if wait > 0:
            with self._lock:
                self.statuses["429"] += 1
                self.statuses["rate_limited"] += 1
            return web.json_response(
                {"error": {"message": "rate limit reached", "type": "rate_limit"}},
                status=429,
                headers={"retry-after-ms": f"{max(wait, 0.005) * 1000:.0f}"},
            )
        fault = self._next_fault()
        await asyncio.sleep(self._latency(body.get("messages")))
        if fault == "429":
            self.statuses["429"] += 1
            return web.json_response(
                {"error": {"message": "rate limited", "type": "rate_limit"}},
                status=429,
                headers={"Retry-After": str(self.retry_after_s)},
            )
        if fault == "500":
            self.statuses["500"] += 1
            return web.json_response({"error": {"message": "internal error", "type": "server_error"}}, status=500)
        if fault == "hang":
            self.statuses["hang"] += 1
            await asyncio.sleep(self.hang_s)
            return web.json_response({"error": {"message": "too late"}}, status=504)
        if fault == "malformed":
            self.statuses["malformed"] += 1
            return web.Response(text='{"id": "chatcmpl-broken", "choices": [', content_type="application/json")
        if fault == "drop":
            self.statuses["drop"] += 1
            request.transport.close()
            raise asyncio.CancelledError
        if fault == "empty":
            self.statuses["empty"] += 1
            return web.json_response(self.completion(body, content=""))
        payload = self.completion(body)
        with self._lock:
            self.completed[body_key(body)] += 1
            self.statuses["200"] += 1
        return web.json_response(payload)

    async def _upload(self, request):
        from aiohttp import web

        form = await request.post()
        upload = form["file"]
        data = upload.file.read() if hasattr(upload, "file") else bytes(upload)
        file_id = "file-" + hashlib.sha256(data).hexdigest()[:16]
        self.files[file_id] = data
        return web.json_response(
            self._file_object(file_id, getattr(upload, "filename", "upload.jsonl"), form.get("purpose", "batch"))
        )

    def _file_object(self, file_id: str, filename: str = "file.jsonl", purpose: str = "batch") -> dict[str, Any]:
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(self.files[file_id]),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }

    async def _file_info(self, request):
        from aiohttp import web

        file_id = request.match_info["file_id"]
        if file_id not in self.files:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.json_response(self._file_object(file_id))

    async def _file_content(self, request):
        from aiohttp import web

        file_id = request.match_info["file_id"]
        if file_id not in self.files:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    async def _create_batch(self, request):
        from aiohttp import web

        body = await request.json()
        data = self.files.get(body["input_file_id"])
        if data is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        out_lines = []
        for line in data.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            with self._lock:
                self.received += 1
                self.completed[body_key(item["body"])] += 1
            out_lines.append(
                json.dumps(
                    {
                        "id": "batch_req_" + item["custom_id"][:8],
                        "custom_id": item["custom_id"],
                        "response": {"status_code": 200, "request_id": "r", "body": self.completion(item["body"])},
                        "error": None,
                    }
                )
            )
        output = ("\n".join(out_lines) + "\n").encode()
        output_id = "file-" + hashlib.sha256(output).hexdigest()[:16]
        self.files[output_id] = output
        batch_id = "batch_" + hashlib.sha256(data + str(len(self.batches)).encode()).hexdigest()[:16]
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint", "/v1/chat/completions"),
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "request_counts": {"total": len(out_lines), "completed": 0, "failed": 0},
            "_output": output_id,
        }
        return web.json_response({k: v for k, v in self.batches[batch_id].items() if not k.startswith("_")})

    async def _get_batch(self, request):
        from aiohttp import web

        batch_id = request.match_info["batch_id"]
        batch = self.batches.get(batch_id)
        if batch is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        self._batch_polls[batch_id] += 1
        if self._batch_polls[batch_id] >= self.batch_polls_before_done:
            batch.update(status="completed", output_file_id=batch["_output"])
            batch["request_counts"]["completed"] = batch["request_counts"]["total"]
        else:
            batch["status"] = "in_progress"
        return web.json_response({k: v for k, v in batch.items() if not k.startswith("_")})


def main() -> None:
    """``python -m empathy_distill.testing.loopback [--latency 0.2]``: serve until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="mean reply latency in seconds (log-normal)")
    parser.add_argument("--sigma", type=float, default=0.6, help="sigma of the log-normal latency")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--latency-per-prompt", action="store_true", help="the same messages always get the same latency"
    )
    parser.add_argument("--rate-limit", type=float, default=None, help="requests/s allowed (token bucket); 429 beyond")
    parser.add_argument("--burst", type=int, default=10, help="the token bucket's size")
    args = parser.parse_args()
    limits = {"rate_limit_per_s": args.rate_limit, "rate_burst": args.burst}
    with LoopbackServer(
        latency_mean_s=args.latency,
        latency_sigma=args.sigma,
        seed=args.seed,
        latency_per_prompt=args.latency_per_prompt,
        **limits,
    ) as server:
        print(f"serving the OpenAI wire format at {server.base_url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
