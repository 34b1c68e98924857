"""OpenAI's chat-completions contract, as pure functions: a request body in, a typed request or an ``ApiError`` out.

Every way a request can be wrong is a 4xx with OpenAI's error shape
(``{"error": {"message", "type", "param", "code"}}``), decided here before any model work:
a body that is empty, not JSON, nested too deep, too large or not an object; a chat that is
empty, has an unknown role, empty text, too many messages, or ends with the assistant; a
parameter of the wrong type or out of range. Token limits need the tokenizer and are checked
by the pool (``pool.check_fits``) with the same error type.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")
ROLE_ALIASES = {"developer": "system"}  # OpenAI's newer name for the system turn
MAX_BODY_BYTES = 1 << 20
"""A chat request larger than 1 MiB is refused (413) before it is parsed."""
MAX_MESSAGES = 256
"""Messages in one chat; the token limit decides for any chat below it."""
MAX_TOKENS = 1024
"""``max_tokens`` above this is refused, whatever the context length."""


@dataclass
class ApiError(Exception):
    """A refusal with its HTTP status, in OpenAI's error shape."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    type: str = "invalid_request_error"
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ChatRequest:
    """A checked ``/v1/chat/completions`` request (a single choice)."""

    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    """None: the version's registered default, cut to what the context leaves."""
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    """Server-Sent Events of ``chat.completion.chunk`` objects, then ``data: [DONE]``."""
    include_usage: bool = False
    """``stream_options.include_usage``: a last chunk with no choices and the token counts."""
    seed: int | None = None
    """Sampling: the reply's own random stream (the same seed and settings give the same reply, whatever else the
    batch holds)."""


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        ApiError: 413 above ``MAX_BODY_BYTES``; 400 when empty, not UTF-8 JSON, nested too deep or not an object.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}", code="too_large")
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object (Content-Type: application/json)")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "the request body is JSON nested too deeply to read") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not a {type(body).__name__}")
    return body


def check_chat(messages: Any, where: str = "messages") -> list[dict[str, str]]:
    """``{role, content}`` turns with known roles, non-empty text and a user turn last.

    ``content`` may be a string or OpenAI's list of ``{"type": "text", "text": ...}`` parts.

    Raises:
        ApiError: 400 naming the message and the field.
    """
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, f"{where} must be a non-empty list of {{role, content}}", param=where)
    if len(messages) > MAX_MESSAGES:
        raise ApiError(400, f"{where} holds {len(messages)} messages; the limit is {MAX_MESSAGES}", param=where)
    chat = []
    for i, m in enumerate(messages):
        at = f"{where}[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"{at}: expected {{role: str, content: str}}", param=at)
        role = ROLE_ALIASES.get(m["role"], m["role"])
        if role not in ROLES:
            raise ApiError(400, f"{at}: role '{m['role']}' is not one of {', '.join(ROLES)}", param=f"{at}.role")
        content = _text(m.get("content"))
        if content is None:
            raise ApiError(400, f"{at}.content: expected a string or a list of text parts", param=f"{at}.content")
        if not content.strip():
            raise ApiError(400, f"{at}.content is empty", param=f"{at}.content")
        chat.append({"role": role, "content": content})
    if chat[-1]["role"] != "user":
        raise ApiError(400, f"{where}: the last message must be the user's", param=where)
    return chat


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)
    return None


def chat_request(body: dict[str, Any]) -> ChatRequest:
    """A checked chat request from a parsed body.

    Raises:
        ApiError: 400 naming the field.
    """
    model = body.get("model", "champion")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "model must be a non-empty string: champion, challenger or a version", param="model")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", param="stream")
    include_usage = _stream_options(body.get("stream_options"), bool(stream))
    if body.get("n", 1) != 1:
        raise ApiError(400, "n must be 1 (one choice per request)", param="n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not _is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS):
        raise ApiError(400, f"max_tokens must be an integer from 1 to {MAX_TOKENS}", param="max_tokens")
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise ApiError(400, "top_p must be above 0", param="top_p")
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
        raise ApiError(400, "seed must be a non-negative integer", param="seed")
    return ChatRequest(
        model=model.strip(),
        messages=check_chat(body.get("messages")),
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stream=bool(stream),
        include_usage=include_usage,
        seed=seed,
    )


def _stream_options(options: Any, stream: bool) -> bool:
    """``include_usage`` from ``stream_options`` (which, as OpenAI's API, only a streamed request may send)."""
    if options is None:
        return False
    if not stream:
        raise ApiError(400, "stream_options is only allowed when stream is true", param="stream_options")
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be a JSON object", param="stream_options")
    unknown = sorted(set(options) - {"include_usage"})
    if unknown:
        raise ApiError(
            400, f"stream_options: unknown {', '.join(unknown)}; known: include_usage", param="stream_options"
        )
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise ApiError(400, "stream_options.include_usage must be true or false", param="stream_options.include_usage")
    return include


def invocation_params(params: Any) -> dict[str, Any]:
    """The ``params`` of an MLflow ``/invocations`` request, checked like a chat request's settings.

    Raises:
        ApiError: 400 naming the parameter.
    """
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ApiError(400, "params must be a JSON object", param="params")
    known = ("max_new_tokens", "temperature", "top_p", "no_repeat_ngram_size")
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ApiError(400, f"params: unknown {', '.join(unknown)}; known: {', '.join(known)}", param="params")
    for key, high in (("max_new_tokens", MAX_TOKENS), ("no_repeat_ngram_size", 16)):
        value = params.get(key)
        low = 1 if key == "max_new_tokens" else 0
        if value is not None and (not _is_int(value) or not low <= value <= high):
            raise ApiError(400, f"params.{key} must be an integer from {low} to {high}", param=f"params.{key}")
    out = {k: params.get(k) for k in ("max_new_tokens", "no_repeat_ngram_size")}
    out["temperature"] = _number(params, "temperature", 0.0, 2.0)
    out["top_p"] = _number(params, "top_p", 0.0, 1.0)
    if out["top_p"] == 0.0:
        raise ApiError(400, "params.top_p must be above 0", param="params.top_p")
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ApiError(400, f"{key} must be a number from {low:g} to {high:g}", param=key)
    return float(value)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass
class ChunkStream:
    """The ``chat.completion.chunk`` events of one streamed reply, as OpenAI sends them: a first chunk with the
    role, one per text delta, one with the ``finish_reason``, with ``include_usage`` a last one with no choices and
    the token counts (``usage: null`` on every other), then ``data: [DONE]``."""

    model_id: str
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _event(self, choices: list[dict[str, Any]], usage_: dict[str, int] | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "system_fingerprint": self.model_id,
            "choices": choices,
        }
        if self.include_usage:
            body["usage"] = usage_
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    def _choice(self, delta: dict[str, str], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    def start(self) -> bytes:
        return self._event(self._choice({"role": "assistant", "content": ""}))

    def delta(self, text: str) -> bytes:
        return self._event(self._choice({"content": text}))

    def end(self, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        out = self._event(self._choice({}, finish_reason))
        if self.include_usage:
            out += self._event([], usage(prompt_tokens, completion_tokens))
        return out + DONE

    @staticmethod
    def error(exc: ApiError) -> bytes:
        """A failure after the stream began (the status line is already sent): an error event, then ``[DONE]``."""
        return b"data: " + json.dumps(exc.body()).encode() + b"\n\n" + DONE


DONE = b"data: [DONE]\n\n"


def completion(
    model_id: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """A ``chat.completion`` object with real token counts."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "system_fingerprint": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }
