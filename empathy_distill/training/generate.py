"""Batched generation for the test prompts: base (adapter disabled) and tuned, from one loaded model.

Prompts are left-padded so that every row of a batch ends where generation starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from empathy_distill.config import GenerationSettings, StudentConfig
from empathy_distill.data.training_sets import user_turn
from empathy_distill.prompts import STUDENT_SYSTEM, load_template
from empathy_distill.tracing import SpanRecord, now_ns, record_trace
from empathy_distill.training.chat import ChatFormat, resolve_chat_format
from empathy_distill.training.student import load_student

logger = logging.getLogger(__name__)


def prompts_for_test_split(dialogues: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """One prompt per test dialogue (sorted by id): ``dialogue_id``, ``system``, ``user``."""
    test = (
        dialogues[dialogues["split"] == "test"]
        .groupby("dialogue_id", sort=True)
        .agg(situation=("situation", "first"), utterance=("utterance", "first"))
    )
    if limit:
        test = test.head(limit)
    system = load_template(STUDENT_SYSTEM)
    return pd.DataFrame(
        {
            "dialogue_id": test.index,
            "system": system,
            "user": [user_turn(s, u) for s, u in zip(test["situation"], test["utterance"])],
        }
    )


@dataclass(frozen=True)
class Reply:
    """One generated reply: its text (up to, not including, the end-of-turn) and how it ended."""

    text: str
    finish_reason: Literal["stop", "length"]
    """stop: the model ended its turn (any of its end-of-turn ids); length: it ran to max_new_tokens without."""
    prompt_tokens: int
    completion_tokens: int
    """Tokens generated, the end-of-turn included."""

    @property
    def finished(self) -> bool:
        return self.finish_reason == "stop"


def cut_at_stop(ids: Sequence[int], stop_ids: Sequence[int], pad_id: int | None) -> tuple[list[int], bool, int]:
    """The reply's ids before the first stop id, whether one came, and how many ids were generated (pads after the
    end are not counted). Nothing after the first stop id is ever part of a reply."""
    stops = set(stop_ids)
    for k, t in enumerate(ids):
        if t in stops:
            return list(ids[:k]), True, k + 1
    n = len(ids)
    while n and pad_id is not None and ids[n - 1] == pad_id and pad_id not in stops:
        n -= 1
    return list(ids[:n]), False, len(ids)


def generate(
    model,
    tokenizer,
    prompts: Sequence[list[dict[str, str]]],
    settings: GenerationSettings,
    desc: str = "generate",
    fmt: ChatFormat | None = None,
    progress: bool = True,
    spans: list[SpanRecord] | None = None,
) -> list[Reply]:
    """Replies to chat prompts, ``settings.batch_size`` at a time, left-padded (a progress bar on a terminal unless
    ``progress`` is False: a server generates for many small requests).

    Generation stops at any of the model's end-of-turn ids (``fmt.stop_ids``: generation_config's eos list, the
    tokenizer's eos and the template's end-of-turn), never only at ``tokenizer.eos_token_id``; a reply is cut at the
    first of them, and one that reached ``max_new_tokens`` without any is marked ``finish_reason="length"``.
    ``spans``, when given, gets a :class:`~empathy_distill.tracing.SpanRecord` per batch (for the run's trace).
    """
    import torch
    from tqdm.auto import tqdm

    if fmt is None:
        fmt = resolve_chat_format(tokenizer, getattr(model, "generation_config", None))
    tokenizer.padding_side = "left"
    encoded = [fmt.prompt_ids(tokenizer, p) for p in prompts]
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else fmt.stop_ids[0]
    outputs: list[Reply] = []
    kwargs = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": pad_id, "eos_token_id": list(fmt.stop_ids)}
    if settings.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = settings.no_repeat_ngram_size
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    model.eval()
    for start in tqdm(
        range(0, len(encoded), settings.batch_size), desc=desc, unit="batch", disable=None if progress else True
    ):
        rows = encoded[start : start + settings.batch_size]
        began = now_ns()
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        for row, new in zip(rows, out[:, width:].tolist()):
            reply_ids, finished, used = cut_at_stop(new, fmt.stop_ids, pad_id)
            outputs.append(
                Reply(
                    text=tokenizer.decode(reply_ids, skip_special_tokens=True).strip(),
                    finish_reason="stop" if finished else "length",
                    prompt_tokens=len(row),
                    completion_tokens=used,
                )
            )
        if spans is not None:
            spans.append(batch_span(desc, start // settings.batch_size, began, outputs[-len(rows) :]))
    return outputs


def batch_span(desc: str, index: int, began: int, replies: list[Reply]) -> SpanRecord:
    """One generation batch as a span: its size, tokens in and out, how many replies ended their turn."""
    return SpanRecord(
        name=f"{desc} batch {index}",
        span_type="LLM",
        start_ns=began,
        end_ns=now_ns(),
        inputs={"prompts": len(replies), "prompt_tokens": sum(r.prompt_tokens for r in replies)},
        outputs={
            "completion_tokens": sum(r.completion_tokens for r in replies),
            "finished": sum(1 for r in replies if r.finished),
            "first_reply": replies[0].text[:500] if replies else "",
        },
    )


def generate_base_and_tuned(
    base_model: str,
    adapter_dir: str | None,
    prompts: pd.DataFrame,
    student: StudentConfig,
    settings: GenerationSettings,
    extra_adapters: dict[str, str] | None = None,
) -> pd.DataFrame:
    """``dialogue_id, base_response, base_finished, tuned_response, tuned_finished`` for each prompt (and
    ``<name>_response``/``<name>_finished`` for each of ``extra_adapters``).

    One model is loaded; the base answers run inside ``disable_adapter()``.
    """
    import torch
    from peft import PeftModel

    tokenizer, model, fmt = load_student(base_model, student)
    if torch.cuda.is_available():
        model = model.to("cuda")
    chats = [
        [{"role": "system", "content": s}, {"role": "user", "content": u}]
        for s, u in zip(prompts["system"], prompts["user"])
    ]
    sides: dict[str, list[Reply]] = {}
    spans: list[SpanRecord] = []
    begun = now_ns()
    if adapter_dir is None:
        sides["base"] = generate(model, tokenizer, chats, settings, desc="generate base", fmt=fmt, spans=spans)
        sides["tuned"] = list(sides["base"])
    else:
        model = PeftModel.from_pretrained(model, adapter_dir, adapter_name="tuned")
        for name, folder in (extra_adapters or {}).items():
            model.load_adapter(folder, adapter_name=name)
        with model.disable_adapter():
            sides["base"] = generate(model, tokenizer, chats, settings, desc="generate base", fmt=fmt, spans=spans)
        for name in ["tuned", *(extra_adapters or {})]:
            model.set_adapter(name)
            sides[name] = generate(model, tokenizer, chats, settings, desc=f"generate {name}", fmt=fmt, spans=spans)
    inputs = {"prompts": len(chats), "sides": list(sides), "base_model": base_model}
    record_trace(
        SpanRecord("generation", "CHAIN", begun, now_ns(), inputs=inputs, attributes=settings.model_dump()), spans
    )
    table = {"dialogue_id": prompts["dialogue_id"].to_numpy()}
    for name, replies in sides.items():
        table[f"{name}_response"] = [r.text for r in replies]
        table[f"{name}_finished"] = ["true" if r.finished else "false" for r in replies]
    return pd.DataFrame(table).astype("string")


def champion_replies(model_uri: str, prompts: pd.DataFrame, settings: GenerationSettings) -> pd.DataFrame:
    """A registered version's replies to the prompts (``response``, ``finish_reason``), through its pyfunc model (as
    the model server runs it)."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    chats = [
        [{"role": "system", "content": s}, {"role": "user", "content": u}]
        for s, u in zip(prompts["system"], prompts["user"])
    ]
    params = settings.model_dump(include={"max_new_tokens", "temperature", "top_p", "no_repeat_ngram_size"})
    return model.predict(pd.DataFrame({"messages": chats}), params=params)
