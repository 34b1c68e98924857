"""The stable address: one process that serves whatever the registry's ``champion`` alias names, and its lifecycle.

``empathy-distill serve`` runs it in the foreground; the pipeline's ``deploy`` step starts it
detached once and afterwards only waits until it serves the new champion: a promotion or a
rollback changes what the same URL answers with, and no client learns a second port. The
switch itself (load the new version beside the old, warm it, swap the route) is in
:mod:`empathy_distill.serving.router`; this module is the HTTP face:

- ``POST /v1/chat/completions``, ``GET /v1/models``: OpenAI's chat API (``model``: ``champion``,
  ``challenger`` or a version), errors in OpenAI's shape; ``stream: true`` answers Server-Sent
  Events of ``chat.completion.chunk`` objects (``stream_options.include_usage`` adds the usage);
- ``POST /invocations``: MLflow's scoring protocol (``dataframe_records``, ``dataframe_split``,
  ``instances``, ``inputs``; ``params``), answered by the default route (the champion);
- ``GET /health`` (and ``/ping``): 200 once the default route is loaded, with the routes and
  every switch count; ``GET /version``.

Admission: at most ``max_concurrency`` requests are inside at once (running or queued for the
model, streams until they end or their client goes away); one more gets 429 with ``Retry-After``
(seconds, from the recent request time) at once. Chats are decoded with continuous batching
(:mod:`empathy_distill.serving.engine`).

    python -m deploy.server --model-name empathy-student --port 5005   # MLFLOW_TRACKING_URI from the environment
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

READY_PATH = "/health"


def port_free(host: str, port: int) -> bool:
    """Nobody listens there. SO_REUSEADDR as uvicorn binds: a closed connection in TIME_WAIT does not make a port
    busy."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> float:
    """Seconds until ``url + /health`` answered 200.

    Raises:
        RuntimeError: the process exited first, or the timeout passed.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering {url}{READY_PATH}")
        if healthy(url):
            return time.monotonic() - start
        time.sleep(0.25)
    raise RuntimeError(f"the server at {url} did not answer {READY_PATH} within {timeout_s:.0f} s")


def healthy(url: str) -> bool:
    """``url + /health`` answers 200 now."""
    try:
        with urllib.request.urlopen(url + READY_PATH, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop(pid: int, timeout_s: float = 15.0) -> bool:
    """SIGTERM to the server's process group, SIGKILL after ``timeout_s``; False when it was not running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # reap our own child (else it lingers as a zombie and looks alive)
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def closing_stream_class():
    """A ``StreamingResponse`` that calls ``on_close`` however it ends: done, failed, or cut by the client (Starlette
    cancels the body when the client disconnects; a body never started has no ``finally`` of its own to run)."""
    from starlette.responses import StreamingResponse

    class ClosingStream(StreamingResponse):
        def __init__(self, content, on_close: Callable[[], None], **kwargs):
            super().__init__(content, **kwargs)
            self.on_close = on_close

        async def __call__(self, scope, receive, send) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                self.on_close()

    return ClosingStream


def build_app(router, max_concurrency: int = 32):
    """The Starlette application over a started router."""
    from mlflow.exceptions import MlflowException
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from empathy_distill.serving.api import (
        MAX_BODY_BYTES,
        ApiError,
        ChunkStream,
        chat_request,
        completion,
        invocation_params,
        parse_body,
    )

    ClosingStream = closing_stream_class()
    state = {"inside": 0, "seconds": 1.0}  # requests inside now; a moving mean of request seconds (for Retry-After)
    name = router.pool.model_name

    async def read(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(
                413, f"the request body is {declared} bytes; the limit is {MAX_BODY_BYTES}", code="too_large"
            )
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                raise ApiError(413, f"the request body is over the limit of {MAX_BODY_BYTES} bytes", code="too_large")
        return parse_body(bytes(raw))

    def admit() -> Callable[[], None]:
        """A place inside, or a 429 with Retry-After; the returned function gives the place back (once)."""
        if state["inside"] >= max_concurrency:
            wait = max(1, math.ceil(state["seconds"]))
            raise ApiError(
                429,
                f"{max_concurrency} requests are being served; retry after {wait} s",
                type="rate_limit_exceeded",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(wait)},
            )
        state["inside"] += 1
        start = time.monotonic()
        given_back = []

        def release() -> None:
            if not given_back:
                given_back.append(True)
                state["inside"] -= 1
                state["seconds"] = 0.8 * state["seconds"] + 0.2 * (time.monotonic() - start)

        return release

    @contextlib.contextmanager
    def admitted():
        release = admit()
        try:
            yield
        finally:
            release()

    async def answer(version, chat, max_tokens, settings):
        version.in_flight += 1
        try:
            return await asyncio.wrap_future(router.pool.submit(version, chat, max_tokens, settings).future)
        finally:
            version.in_flight -= 1

    async def stream(version, req, release: Callable[[], None]) -> Response:
        """The reply as Server-Sent Events. The status waits for the engine's first word: a chat refused there (a
        prompt over the context) is a plain 4xx, as for a request that does not stream. The place inside is given
        back when the stream ends or the client goes away; then the chat leaves the batch before the next step."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        version.in_flight += 1
        job = router.pool.submit(
            version,
            req.messages,
            req.max_tokens,
            {"temperature": req.temperature, "top_p": req.top_p, "seed": req.seed},
            listener=lambda kind, value: loop.call_soon_threadsafe(events.put_nowait, (kind, value)),
        )
        closed = []

        def close() -> None:
            if not closed:
                closed.append(True)
                job.cancel()  # a no-op for a chat that ended
                version.in_flight -= 1
                release()

        try:
            first = await events.get()
        except BaseException:
            close()
            raise
        if first[0] == "error":
            close()
            raise first[1]
        chunks = ChunkStream(f"{name}/{version.number}", req.include_usage)

        async def body():
            try:
                yield chunks.start()
                kind, value = first
                while True:
                    if kind == "delta":
                        yield chunks.delta(value)
                    elif kind == "done":
                        yield chunks.end(value.finish_reason, value.prompt_tokens, value.completion_tokens)
                        return
                    else:
                        yield ChunkStream.error(value)
                        return
                    kind, value = await events.get()
            finally:
                close()

        headers = {"X-Model-Version": version.number, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return ClosingStream(body(), on_close=close, media_type="text/event-stream", headers=headers)

    async def chat_completions(request: Request) -> Response:
        release = None
        try:
            release = admit()
            req = chat_request(await read(request))
            version = await run_in_threadpool(router.resolve, req.model)
            if req.stream:
                response = await stream(version, req, release)
                release = None  # the stream gives the place back
                return response
            settings = {"temperature": req.temperature, "top_p": req.top_p, "seed": req.seed}
            reply = await answer(version, req.messages, req.max_tokens, settings)
        except ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        finally:
            if release is not None:
                release()
        body = completion(
            f"{name}/{version.number}", reply.text, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens
        )
        return JSONResponse(body, headers={"X-Model-Version": version.number})

    async def invocations(request: Request) -> JSONResponse:
        """MLflow's scoring protocol, answered by the default route."""
        from mlflow.pyfunc.scoring_server import infer_and_parse_data

        from empathy_distill.registry.pyfunc import MAX_ROWS, check_chat

        def mlflow_error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
            code = "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
            return JSONResponse({"error_code": code, "message": message}, status_code=status, headers=headers or {})

        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind not in ("application/json", ""):
            return mlflow_error(415, f"Content-Type {kind} is not served here; send application/json")
        try:
            with admitted():
                body = await read(request)
                params = invocation_params(body.pop("params", None))
                try:
                    frame = infer_and_parse_data(body)
                except (MlflowException, ValueError, TypeError, KeyError) as exc:
                    raise ApiError(400, " ".join(str(exc).split())[:500]) from None
                if "messages" not in frame.columns:
                    raise ApiError(400, "expected one chat per row in a 'messages' column")
                if len(frame) > MAX_ROWS:
                    raise ApiError(400, f"{len(frame)} chats in one request; at most {MAX_ROWS}")
                try:
                    chats = [check_chat(m, row) for row, m in enumerate(frame["messages"])]
                except MlflowException as exc:
                    raise ApiError(400, exc.message) from None
                settings = {k: params.get(k) for k in ("temperature", "top_p", "no_repeat_ngram_size")}
                version = await run_in_threadpool(router.resolve, router.default)
                replies = await asyncio.gather(
                    *(answer(version, chat, params.get("max_new_tokens"), settings) for chat in chats)
                )
        except ApiError as exc:
            return mlflow_error(exc.status, exc.message, exc.headers)
        predictions = [{"response": r.text, "finish_reason": r.finish_reason} for r in replies]
        return JSONResponse({"predictions": predictions}, headers={"X-Model-Version": version.number})

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": router.models()})

    async def health(request: Request) -> JSONResponse:
        body = router.health()
        up = router.routes.get(router.default) in router.pool.versions
        body = {"status": "ok" if up else "loading", "inside": state["inside"], **body}
        return JSONResponse(body, status_code=200 if up else 503)

    async def version(request: Request) -> JSONResponse:
        import mlflow

        return JSONResponse({"mlflow": mlflow.__version__, "model": name})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/ping", health, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
        ]
    )


def run(
    model_name: str,
    tracking_uri: str,
    host: str,
    port: int,
    state_dir: str | Path,
    default: str = "champion",
    max_concurrency: int = 32,
    poll_s: float = 1.0,
    max_loaded: int = 4,
    dtype: str = "version",
    merge: bool = True,
    decoder: str = "auto",
) -> None:
    """Loads the default route, then serves until SIGTERM/SIGINT (uvicorn), following the registry meanwhile.

    Raises:
        RuntimeError: the default route names no version, or it does not load.
    """
    from empathy_distill.serving.pool import Pool
    from empathy_distill.serving.router import Router

    state_dir = Path(state_dir)
    pool = Pool(
        model_name,
        tracking_uri,
        state_dir / "versions",
        max_loaded=max_loaded,
        dtype=dtype,
        merge=merge,
        decoder=decoder,
    )
    url = f"http://{host}:{port}"
    router = Router(
        pool,
        default=default,
        poll_s=poll_s,
        state_file=state_dir / "live.json",
        state={
            "url": url,
            "host": host,
            "port": port,
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "log": str(state_dir / "server.log"),
        },
    )
    router.refresh()
    if router.routes.get(default) is None:
        reason = router.errors.get(default) or f"no version of {model_name} holds '{default}'"
        raise RuntimeError(f"cannot serve {model_name}@{default}: {reason}")
    router.start()
    serve_until_stopped(router, host, port, max_concurrency)


def serve_until_stopped(router, host: str, port: int, max_concurrency: int) -> None:
    """The app over ``router`` in uvicorn until SIGTERM/SIGINT; then the router (and its engines) stop."""
    import uvicorn

    config = uvicorn.Config(
        build_app(router, max_concurrency),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        # a backstop for memory, far above the admission limit: the app answers 429 with Retry-After itself, while
        # uvicorn beyond its limit answers a plain-text 503 without one
        limit_concurrency=max(512, 16 * max_concurrency),
        timeout_graceful_shutdown=15,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        router.stop()


def run_base(
    model: str,
    host: str,
    port: int,
    cache_dir: str | Path,
    dtype: str = "auto",
    decoder: str = "auto",
    max_concurrency: int = 32,
    system_prompt: str = "",
) -> None:
    """Serves one unadapted model (a preset, folder, GGUF path or hub id) until SIGTERM/SIGINT: the same API, no
    registry (``serve --base``)."""
    from empathy_distill.serving.base_model import BasePool, BaseRouter

    router = BaseRouter(BasePool(model, cache_dir, dtype=dtype, decoder=decoder, system_prompt=system_prompt))
    serve_until_stopped(router, host, port, max_concurrency)


def start_base(
    model: str, port: int, log_file: str | Path, cwd: str | Path, options: Sequence[str] = (), env: dict | None = None
) -> subprocess.Popen:
    """``empathy-distill serve --base MODEL`` on 127.0.0.1:``port``, detached, its output in ``log_file``
    (``options``: more CLI arguments, e.g. ``--set student.cache_dir=...``; ``env``: its environment, default this
    process's; this repository goes first on its PYTHONPATH)."""
    environ = dict(os.environ if env is None else env)
    repo = str(Path(__file__).resolve().parent.parent)
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, environ.get("PYTHONPATH")) if p)
    with open(log_file, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--base", model, "--port", str(port), *options],
            env=environ,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start(
    model_name: str,
    tracking_uri: str,
    host: str,
    port: int,
    state_dir: str | Path,
    max_concurrency: int = 32,
    poll_s: float = 1.0,
    max_loaded: int = 4,
    dtype: str = "version",
    merge: bool = True,
    decoder: str = "auto",
) -> subprocess.Popen:
    """The server, detached (its own session, so it outlives the step that started it). The tracking URI travels
    in the environment, not on the command line (it may hold credentials)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    repo = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p),
    }
    cmd = [
        sys.executable,
        "-m",
        "deploy.server",
        "--model-name",
        model_name,
        "--host",
        host,
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        "--max-concurrency",
        str(max_concurrency),
        "--poll-s",
        str(poll_s),
        "--max-loaded",
        str(max_loaded),
        "--dtype",
        dtype,
        *([] if merge else ["--no-merge"]),
        "--decoder",
        decoder,
    ]
    with open(state_dir / "server.log", "ab") as log:
        return subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def serving(url: str) -> dict[str, Any] | None:
    """The server's ``/health`` body (its routes), or None when it does not answer."""
    try:
        with urllib.request.urlopen(url + READY_PATH, timeout=2) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with contextlib.suppress(ValueError):
            return json.loads(err.read())
        return None
    except (OSError, ValueError):
        return None


def wait_serving(url: str, version: str, timeout_s: float, route: str = "champion") -> float:
    """Seconds until the server at ``url`` answers ``route`` with ``version``.

    Raises:
        RuntimeError: the timeout passed first (the message says what it serves and any load error).
    """
    start_t = time.monotonic()
    seen = None
    while time.monotonic() - start_t < timeout_s:
        seen = serving(url)
        if seen and seen.get("routes", {}).get(route) == str(version):
            return time.monotonic() - start_t
        time.sleep(0.2)
    raise RuntimeError(
        f"the server at {url} did not switch {route} to v{version} within {timeout_s:.0f} s "
        f"(serving {(seen or {}).get('routes')}, errors {(seen or {}).get('errors')})"
    )


def live(state_dir: str | Path) -> dict[str, Any] | None:
    """The server's own record (``<state_dir>/live.json``: URL, pid, routes), or None."""
    path = Path(state_dir) / "live.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def deploy(
    model_name: str,
    version: str,
    tracking_uri: str,
    host: str,
    port: int,
    state_dir: str | Path,
    ready_timeout_s: float = 120.0,
    max_concurrency: int = 32,
    poll_s: float = 1.0,
    max_loaded: int = 4,
    dtype: str = "version",
    merge: bool = True,
    decoder: str = "auto",
) -> dict[str, Any]:
    """Makes the stable address serve ``version`` as champion: starts the server when none answers there, then
    waits until it has followed the alias (the alias is already moved: the registry is the only trigger).

    Raises:
        RuntimeError: the port is held by something else, the server exited, or it did not switch in time.
    """
    url = f"http://{host}:{port}"
    record = live(state_dir)
    health = serving(url)
    started = False
    if health is None or health.get("model") != model_name:
        if health is not None or not port_free(host, port):
            raise RuntimeError(f"port {port} on {host} is in use by something other than this model's server")
        proc = start(
            model_name, tracking_uri, host, port, state_dir, max_concurrency, poll_s, max_loaded, dtype, merge, decoder
        )
        try:
            wait_ready(url, ready_timeout_s, proc)
        except RuntimeError:
            stop(proc.pid)
            raise
        started = True
    switched = wait_serving(url, version, ready_timeout_s)
    record = live(state_dir) or {}
    return {
        "url": url,
        "host": host,
        "port": port,
        "pid": record.get("pid"),
        "model": model_name,
        "version": str(version),
        "model_uri": f"models:/{model_name}@champion",
        "started": started,
        "ready_seconds": round(switched, 2),
        "log": str(Path(state_dir) / "server.log"),
    }


def quiet_loading() -> None:
    """No progress bars from downloads and weight loading in a server's log; no telemetry."""
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve a registered model's champion at one stable address")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5005)
    parser.add_argument("--state-dir", default=".cache/deploy")
    parser.add_argument("--default", default="champion", help="champion, another alias, or a pinned version number")
    parser.add_argument("--max-concurrency", type=int, default=32)
    parser.add_argument("--poll-s", type=float, default=1.0)
    parser.add_argument("--max-loaded", type=int, default=4)
    parser.add_argument("--dtype", default="version", choices=["version", "float32", "bfloat16", "int8"])
    parser.add_argument("--no-merge", action="store_true", help="never merge an adapter into its base's weights")
    parser.add_argument(
        "--decoder",
        default="auto",
        choices=["auto", "packed", "transformers"],
        help="auto: our packed decoding pass for Llama-family bfloat16 weights on a CPU; transformers: never",
    )
    args = parser.parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 <pid>: every thread's stack into the log
    quiet_loading()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(
            args.model_name,
            os.environ.get("MLFLOW_TRACKING_URI", ""),
            args.host,
            args.port,
            args.state_dir,
            args.default,
            args.max_concurrency,
            args.poll_s,
            args.max_loaded,
            dtype=args.dtype,
            merge=not args.no_merge,
            decoder=args.decoder,
        )
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
