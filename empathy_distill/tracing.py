"""MLflow traces of the LLM work: a teacher stage's requests, an LLM judge's requests, generation and judging
batches.

Spans are recorded after the work, from timings taken while it ran (:class:`SpanRecord`), so that a request in
flight pays two clock reads and nothing else: one trace per stage, a root span for the stage and a child span per
request or batch, written by MLflow's asynchronous exporter. Only inside an active MLflow run (the run's page then
lists the traces); nowhere else. A trace never carries a key or a password: endpoints go through
:func:`~empathy_distill.tracking.without_password`, and requests hold only their messages.

Cost, measured (``bench/teacher_throughput.py``): recording a span takes about 0.3 ms in the caller's thread; MLflow
then writes each span to its store on its own writer threads (about 3 ms a span on SQLite here), so a teacher stage
traces a sample of its requests: ``teacher.tracing.sample_rate`` of them, at most
``teacher.tracing.max_request_spans`` (chosen by request hash: a rerun traces the same ones).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from empathy_distill.tracking import without_password

logger = logging.getLogger(__name__)


@dataclass
class SpanRecord:
    """One span as it happened: name, type (MLflow's ``SpanType``), times, what went in and came out."""

    name: str
    span_type: str
    start_ns: int
    end_ns: int
    inputs: Any = None
    outputs: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def now_ns() -> int:
    return time.time_ns()


def pick(keys: Sequence[str], sample_rate: float, max_spans: int | None) -> list[int]:
    """Indexes of the requests to trace: those whose hex key falls under ``sample_rate``, the ``max_spans`` lowest
    keys of them at most. Deterministic: a rerun of the same requests traces the same ones."""
    if sample_rate <= 0 or max_spans == 0:
        return []
    chosen = [i for i, k in enumerate(keys) if sample_rate >= 1.0 or int(k[:8], 16) / 0xFFFFFFFF < sample_rate]
    if max_spans is not None and len(chosen) > max_spans:
        chosen = sorted(sorted(chosen, key=lambda i: keys[i])[:max_spans])
    return chosen


def tracing_active() -> bool:
    """Whether a trace would land anywhere: an MLflow run is active in this thread."""
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return False
    return mlflow.active_run() is not None


def record_trace(root: SpanRecord, children: Sequence[SpanRecord]) -> str | None:
    """Hands one trace (the root span and its children) to MLflow's exporter for the active run's experiment; returns
    its id, or None when no run is active or MLflow refused it (a trace is never worth failing the work it
    describes). MLflow writes it on its own threads (and at the latest when the process exits): :func:`flush` waits
    for that."""
    if not tracing_active():
        return None
    try:
        top = _start(root, None)
        for child in children:
            _end(_start(child, top), child)
        _end(top, root)
        return top.trace_id
    except Exception as exc:  # noqa: BLE001
        logger.warning("trace %s not recorded: %s", root.name, exc)
        return None


def _start(record: SpanRecord, parent: Any) -> Any:
    import mlflow

    return mlflow.start_span_no_context(
        record.name,
        span_type=record.span_type,
        parent_span=parent,
        inputs=record.inputs,
        attributes=record.attributes,
        start_time_ns=record.start_ns,
    )


def _end(span: Any, record: SpanRecord) -> None:
    from mlflow.entities import SpanStatusCode

    if record.outputs is not None:
        span.set_outputs(record.outputs)
    if record.error:
        span.set_status(SpanStatusCode.ERROR)
        span.set_attribute("error", record.error)
    span.end(end_time_ns=max(record.end_ns, record.start_ns))


def flush() -> None:
    """Waits until every trace handed to MLflow's exporter is written (MLflow's queue polls once a second: a flush
    takes about a second even when nothing is left)."""
    try:
        import mlflow

        mlflow.flush_trace_async_logging()
    except Exception as exc:  # noqa: BLE001
        logger.warning("traces not flushed: %s", exc)


def request_spans(
    stage: str,
    requests: Sequence[Any],
    results: Sequence[Any],
    outcomes: Sequence[str],
    *,
    endpoint: str | None,
    prompt: str | None,
    chosen: Sequence[int],
    stage_start_ns: int,
) -> list[SpanRecord]:
    """A span per chosen request: prompt version, model, endpoint, tokens in and out, latency, cache hit or sent,
    attempts, the parse outcome; the messages as inputs, the reply as outputs."""
    spans = []
    for i in chosen:
        req, res = requests[i], results[i]
        start = getattr(res, "started_ns", 0) or stage_start_ns
        end = getattr(res, "ended_ns", 0) or start
        spans.append(
            SpanRecord(
                name=f"{stage} request",
                span_type="CHAT_MODEL",
                start_ns=start,
                end_ns=end,
                inputs={"messages": req.openai_messages()},
                outputs={"text": res.text} if res.ok else None,
                attributes={
                    "prompt": prompt or "",
                    "model": req.model,
                    "endpoint": endpoint or "",
                    "temperature": req.temperature,
                    "max_tokens": req.max_tokens,
                    "request_key": req.key[:16],
                    "cache": "hit" if res.cached else "sent",
                    "attempts": res.attempts,
                    "retries": max(res.attempts - 1, 0),
                    "prompt_tokens": res.prompt_tokens,
                    "completion_tokens": res.completion_tokens,
                    "latency_ms": round((end - start) / 1e6, 3),
                    "outcome": outcomes[i],
                },
                error=res.error,
            )
        )
    return spans


def trace_requests(
    stage: str,
    requests: Sequence[Any],
    results: Sequence[Any],
    outcomes: Sequence[str],
    *,
    settings: Any,
    endpoint: str | None,
    prompt: str | None,
    stage_start_ns: int,
) -> str | None:
    """One trace for a stage of LLM requests (a teacher turn, an LLM judge's verdicts): the stage's counts on the
    root span, a sampled share of its requests as children (``settings``: ``sample_rate``, ``max_request_spans``)."""
    if not tracing_active() or not requests:
        return None

    endpoint = without_password(endpoint)[0]
    chosen = pick([r.key for r in requests], settings.sample_rate, settings.max_request_spans)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        head = outcome.split(":")[0]
        counts[head] = counts.get(head, 0) + 1
    root = SpanRecord(
        name=stage,
        span_type="CHAIN",
        start_ns=stage_start_ns,
        end_ns=now_ns(),
        inputs={"requests": len(requests)},
        outputs={"outcomes": counts, "traced_requests": len(chosen)},
        attributes={
            "prompt": prompt or "",
            "model": requests[0].model,
            "endpoint": endpoint or "",
            "cache_hits": sum(1 for r in results if r.cached),
            "sample_rate": settings.sample_rate,
        },
    )
    spans = request_spans(
        stage,
        requests,
        results,
        outcomes,
        endpoint=endpoint,
        prompt=prompt,
        chosen=chosen,
        stage_start_ns=stage_start_ns,
    )
    return record_trace(root, spans)
