"""The HTTP face of the stable address: a Starlette application over a started router.

- ``POST /v1/chat/completions``, ``GET /v1/models``: OpenAI's chat API (``model``: ``champion``,
  ``challenger`` or a version), errors in OpenAI's shape; ``stream: true`` answers Server-Sent
  Events of ``chat.completion.chunk`` objects (``stream_options.include_usage`` adds the usage);
- ``POST /invocations``: MLflow's scoring protocol (``dataframe_records``, ``dataframe_split``,
  ``instances``, ``inputs``; ``params``), answered by the default route (the champion);
- ``GET /health`` (and ``/ping``): 200 once the default route is loaded, with the routes and
  every switch count; ``GET /version``.

Admission: at most ``max_concurrency`` requests are inside at once (running or queued for the
model, streams until they end or their client goes away); one more gets 429 with ``Retry-After``
(seconds, from the recent request time) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import infer_and_parse_data
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from empathy_distill.registry.pyfunc import MAX_ROWS, check_chat
from empathy_distill.serving.api import (
    MAX_BODY_BYTES,
    ApiError,
    ChunkStream,
    chat_request,
    completion,
    invocation_params,
    parse_body,
)


class ClosingStream(StreamingResponse):
    """A ``StreamingResponse`` that calls ``on_close`` however it ends: done, failed, or cut by the client (Starlette
    cancels the body when the client disconnects; a body never started has no ``finally`` of its own to run)."""

    def __init__(self, content, on_close: Callable[[], None], **kwargs):
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


class Admission:
    """At most ``limit`` requests inside at once; one more is refused with 429 and a ``Retry-After`` from a moving
    mean of recent request seconds."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inside = 0
        self.seconds = 1.0

    def admit(self) -> Callable[[], None]:
        """A place inside, or a 429 with Retry-After; the returned function gives the place back (once)."""
        if self.inside >= self.limit:
            wait = max(1, math.ceil(self.seconds))
            raise ApiError(
                429,
                f"{self.limit} requests are being served; retry after {wait} s",
                type="rate_limit_exceeded",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(wait)},
            )
        self.inside += 1
        start = time.monotonic()
        given_back = []

        def release() -> None:
            if not given_back:
                given_back.append(True)
                self.inside -= 1
                self.seconds = 0.8 * self.seconds + 0.2 * (time.monotonic() - start)

        return release

    @contextlib.contextmanager
    def admitted(self):
        release = self.admit()
        try:
            yield
        finally:
            release()


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON body, refused with 413 past ``MAX_BODY_BYTES`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is {declared} bytes; the limit is {MAX_BODY_BYTES}", code="too_large")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is over the limit of {MAX_BODY_BYTES} bytes", code="too_large")
    return parse_body(bytes(raw))


def mlflow_error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """An error in MLflow's scoring server's shape."""
    code = "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
    return JSONResponse({"error_code": code, "message": message}, status_code=status, headers=headers or {})


class ServingApp:
    """The request handlers over one router (its pool decodes; its routes name the versions)."""

    def __init__(self, router, max_concurrency: int) -> None:
        self.router = router
        self.admission = Admission(max_concurrency)
        self.name = router.pool.model_name

    async def answer(self, version, chat, max_tokens, settings):
        version.in_flight += 1
        try:
            return await asyncio.wrap_future(self.router.pool.submit(version, chat, max_tokens, settings).future)
        finally:
            version.in_flight -= 1

    async def stream(self, version, req, release: Callable[[], None]) -> Response:
        """The reply as Server-Sent Events. The status waits for the engine's first word: a chat refused there (a
        prompt over the context) is a plain 4xx, as for a request that does not stream. The place inside is given
        back when the stream ends or the client goes away; then the chat leaves the batch before the next step."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        version.in_flight += 1
        job = self.router.pool.submit(
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
        chunks = ChunkStream(f"{self.name}/{version.number}", req.include_usage)
        headers = {"X-Model-Version": version.number, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        body = self._events(chunks, first, events, close)
        return ClosingStream(body, on_close=close, media_type="text/event-stream", headers=headers)

    @staticmethod
    async def _events(chunks: ChunkStream, first, events: asyncio.Queue, close: Callable[[], None]):
        """The stream's chunks: the first event already read, the rest as the engine sends them."""
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

    async def chat_completions(self, request: Request) -> Response:
        release = None
        try:
            release = self.admission.admit()
            req = chat_request(await read_body(request))
            version = await run_in_threadpool(self.router.resolve, req.model)
            if req.stream:
                response = await self.stream(version, req, release)
                release = None  # the stream gives the place back
                return response
            settings = {"temperature": req.temperature, "top_p": req.top_p, "seed": req.seed}
            reply = await self.answer(version, req.messages, req.max_tokens, settings)
        except ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        finally:
            if release is not None:
                release()
        body = completion(
            f"{self.name}/{version.number}",
            reply.text,
            reply.finish_reason,
            reply.prompt_tokens,
            reply.completion_tokens,
        )
        return JSONResponse(body, headers={"X-Model-Version": version.number})

    async def invocations(self, request: Request) -> JSONResponse:
        """MLflow's scoring protocol, answered by the default route."""
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind not in ("application/json", ""):
            return mlflow_error(415, f"Content-Type {kind} is not served here; send application/json")
        try:
            with self.admission.admitted():
                body = await read_body(request)
                params = invocation_params(body.pop("params", None))
                chats = scoring_chats(body)
                settings = {k: params.get(k) for k in ("temperature", "top_p", "no_repeat_ngram_size")}
                version = await run_in_threadpool(self.router.resolve, self.router.default)
                replies = await asyncio.gather(
                    *(self.answer(version, chat, params.get("max_new_tokens"), settings) for chat in chats)
                )
        except ApiError as exc:
            return mlflow_error(exc.status, exc.message, exc.headers)
        predictions = [{"response": r.text, "finish_reason": r.finish_reason} for r in replies]
        return JSONResponse({"predictions": predictions}, headers={"X-Model-Version": version.number})

    async def models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": self.router.models()})

    async def health(self, request: Request) -> JSONResponse:
        body = self.router.health()
        up = self.router.routes.get(self.router.default) in self.router.pool.versions
        body = {"status": "ok" if up else "loading", "inside": self.admission.inside, **body}
        return JSONResponse(body, status_code=200 if up else 503)

    async def version(self, request: Request) -> JSONResponse:
        return JSONResponse({"mlflow": mlflow.__version__, "model": self.name})


def scoring_chats(body: dict[str, Any]) -> list:
    """The chats of an MLflow scoring request (one per row of a ``messages`` column), each checked.

    Raises:
        ApiError: 400 naming what is wrong (the format, the column, the row count, a row's chat).
    """
    try:
        frame = infer_and_parse_data(body)
    except (MlflowException, ValueError, TypeError, KeyError) as exc:
        raise ApiError(400, " ".join(str(exc).split())[:500]) from None
    if "messages" not in frame.columns:
        raise ApiError(400, "expected one chat per row in a 'messages' column")
    if len(frame) > MAX_ROWS:
        raise ApiError(400, f"{len(frame)} chats in one request; at most {MAX_ROWS}")
    try:
        return [check_chat(m, row) for row, m in enumerate(frame["messages"])]
    except MlflowException as exc:
        raise ApiError(400, exc.message) from None


def build_app(router, max_concurrency: int = 32) -> Starlette:
    """The Starlette application over a started router."""
    app = ServingApp(router, max_concurrency)
    return Starlette(
        routes=[
            Route("/v1/chat/completions", app.chat_completions, methods=["POST"]),
            Route("/v1/models", app.models, methods=["GET"]),
            Route("/invocations", app.invocations, methods=["POST"]),
            Route("/health", app.health, methods=["GET"]),
            Route("/ping", app.health, methods=["GET"]),
            Route("/version", app.version, methods=["GET"]),
        ]
    )
