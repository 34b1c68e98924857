"""Continuous batching: one decoding loop per loaded base, which chats join at the next step and leave when they end.

The chats that arrived since the last step are prefilled together (their prompts left-padded in
one forward pass, into a KV cache of their own); that cache is then merged into the running
batch's (every row left-padded to one length, pads masked), and from then on each decoding step
advances every running chat by one token in one forward pass. A
chat that ends (its end-of-turn, its ``max_new_tokens``, or a client that went away) leaves the
batch before the next step, and cache columns that no remaining chat needs are dropped. So a chat
that arrives while others are mid-reply waits for one decoding step and its own prefill, never
for their replies to end.

Rows of one batch may use different adapters of the base (PEFT's mixed-adapter batches) and
different settings: ``no_repeat_ngram_size``, a model's own repetition penalty and sampling are
applied row by row with transformers' logits processors, on the row's own ids, so a greedy reply
is the one ``generate()`` gives (compared in ``tests/integration/test_engine.py``).

A request may carry a listener: it hears each new piece of reply text (``"delta"``, never half
a multi-byte character, never text that a later token could still change), then ``"done"`` with
the whole ``Reply``, or ``"error"``; what the deltas add up to is exactly the reply's text.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from empathy_distill.config import GenerationSettings
from empathy_distill.serving.api import ApiError
from empathy_distill.serving.decoder import PackedDecoder, why_not
from empathy_distill.training.generate import Reply

logger = logging.getLogger(__name__)

Listener = Callable[[str, Any], None]
"""Called from the engine's thread: ``("delta", str)``, then ``("done", Reply)`` or ``("error", ApiError)``."""


def stream_delta(decoded: str, emitted: str) -> str:
    """The text that can be sent now, given all the reply's tokens decoded so far and what was already sent.

    Held back: leading and trailing whitespace (a reply is stripped, and a space may turn out to be its end), a
    trailing U+FFFD (the first bytes of a character whose last bytes are still to come), and everything when the
    decoding no longer starts with what was sent (a tokenizer that rewrites earlier text; the rest then goes at
    the end).
    """
    text = decoded.strip()
    while text.endswith("\ufffd"):
        text = text[:-1].rstrip()
    if not text.startswith(emitted):
        return ""
    return text[len(emitted) :]


def server_error(message: str) -> ApiError:
    """A failure of ours, not the request's: 500 in OpenAI's shape (the log has the traceback)."""
    return ApiError(500, message + " (see the server log)", type="server_error", code="internal_error")


CANCELLED = ApiError(499, "the client went away before the reply ended", code="client_closed")


def context_length(model, tokenizer) -> int:
    """The model's context in tokens: its config's positions (``max_position_embeddings``, GPT-2's ``n_positions``),
    else the tokenizer's ``model_max_length`` when it is a real figure."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 2048


def fit(prompt_tokens: int, max_tokens: int | None, default: int, context: int) -> int:
    """The tokens to generate: ``max_tokens`` when prompt + it fits the context (else a 400 naming both); without
    one, the registered default cut to what the context leaves.

    Raises:
        ApiError: 400 when the prompt leaves no room, or prompt + max_tokens is above the context.
    """
    room = context - prompt_tokens
    if max_tokens is None:
        if room < 1:
            raise ApiError(
                400,
                f"the prompt is {prompt_tokens} tokens after the chat template; the model's context is {context} "
                "tokens: shorten the chat",
                param="messages",
                code="context_length_exceeded",
            )
        return min(default, room)
    if max_tokens > room:
        raise ApiError(
            400,
            f"the prompt is {prompt_tokens} tokens after the chat template and max_tokens is {max_tokens}: "
            f"{prompt_tokens + max_tokens} is above the model's context of {context} tokens; shorten the chat or "
            f"lower max_tokens to {max(room, 0)}",
            param="messages",
            code="context_length_exceeded",
        )
    return max_tokens


@dataclass(eq=False)
class Request:
    """One chat in the engine: what was asked, and (the engine's) how far its reply has got."""

    chat: list[dict[str, str]]
    max_tokens: int | None
    """None: ``settings['max_new_tokens']``, cut to what the context leaves."""
    settings: dict[str, Any]
    adapter: str | None = None
    listener: Listener | None = None
    future: Future = field(default_factory=Future)
    prompt: list[int] = field(default_factory=list)
    out: list[int] = field(default_factory=list)
    max_new: int = 0
    sample: bool = False
    seed: int | None = None
    """Sampling only: this row's own random stream (the same seed, the same reply, whatever else shares the batch)."""
    generator: Any = None
    processors: list = field(default_factory=list)
    emitted: str = ""
    cancelled_at: float | None = None
    """``time.monotonic()`` of the cancel (the clock is the machine's: a client process can compare its own)."""
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """The client went away: the row leaves the batch before the engine's next step."""
        if self.cancelled_at is None:
            self.cancelled_at = time.monotonic()
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def tell(self, kind: str, value: Any) -> None:
        if self.listener is not None:
            try:
                self.listener(kind, value)
            except Exception:  # noqa: BLE001 (a listener's failure ends its own stream, never the engine)
                logger.exception("a stream listener failed")
                self.cancel()

    def fail(self, error: ApiError) -> None:
        if not self.future.done():
            self.future.set_exception(error)
        self.tell("error", error)


class Engine:
    """The decoding loop of one loaded model (a plain model or a ``PeftModel`` holding several adapters).

    Args:
        model: the model, in eval mode, on its device.
        tokenizer: its tokenizer.
        fmt: its ``ChatFormat`` (prompt ids, stop ids).
        max_batch: chats decoded together at most; more wait in line.
        max_prefill_tokens: prompt tokens prefilled between two decoding steps at most (one prompt always), so that
            a burst of arrivals does not stall the chats already running.
        lock: held around each step (the pool takes it to load or drop an adapter).
        merge: while the model holds one adapter only, its LoRA product is merged into the base weights (one matmul
            per layer instead of three; the replies move within float32 rounding); a second adapter loaded unmerges
            it (PEFT subtracts what it added: the base's weights come back within one rounding per merge).
        decoder: ``auto``: a Llama-family model in float32 or bfloat16 on a CPU runs our own decoding pass on weights
            packed for oneDNN (``serving.decoder``; a second copy of the weights in memory) while it holds no adapter
            or one merged; ``packed``: that pass wherever the model allows it (unpacked off a CPU); ``int8``: that pass
            with int8 weights (a bfloat16 model on a CPU); ``transformers``: the model's own forward always.
            Mixed-adapter batches always use the model's forward.

    The model's own generation config counts as in ``generate()``: its repetition penalty, and its top-k when
    sampling.
    """

    def __init__(
        self,
        model,
        tokenizer,
        fmt,
        max_batch: int = 32,
        max_prefill_tokens: int = 1024,
        lock: threading.Lock | None = None,
        name: str = "engine",
        merge: bool = False,
        decoder: str = "auto",
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.context = context_length(model, tokenizer)
        self.max_batch = max_batch
        self.max_prefill_tokens = max_prefill_tokens
        self.lock = lock or threading.Lock()
        self.generation_config = getattr(model, "generation_config", None)
        self.stop_ids = frozenset(fmt.stop_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else fmt.stop_ids[0]
        self.peft = hasattr(model, "peft_config")
        self.merge = merge and self.peft
        self.merges = 0
        self._tuner_layer = None
        self.decoder = decoder
        self.decoder_why = self._decoder_refusal()
        """None when the packed pass serves this model, else why not (stats' ``decoder``)."""
        self._packed = None
        self._packed_for: tuple | None = None
        self.packed_builds = 0
        self.cache_arg = cache_argument(model.get_base_model() if self.peft else model)
        self.inbox: queue.Queue[Request | None] = queue.Queue()
        self.line: deque[Request] = deque()
        self.rows: list[Request] = []
        self.cache = None
        self.mask = None
        self.steps = 0
        self.counts = {"prefills": 0, "finished": 0, "cancelled": 0, "failed": 0, "max_running": 0}
        self.cancels: deque[dict[str, float]] = deque(maxlen=64)
        """The latest cancels of running chats: when it came, when the row left, decoding steps begun in between, and
        the step count at the removal."""
        self.step_seconds = 0.0
        """A moving mean of one decoding step's wall time."""
        self._step_starts: deque[float] = deque(maxlen=4096)
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # the client side --------------------------------------------------------------------------------------------

    def submit(
        self,
        chat: list[dict[str, str]],
        max_tokens: int | None,
        settings: dict[str, Any],
        adapter: str | None = None,
        listener: Listener | None = None,
    ) -> Request:
        """Queues a chat; its ``future`` holds a ``Reply`` or raises ``ApiError``."""
        request = Request(chat, max_tokens, dict(settings), adapter, listener)
        self.inbox.put(request)
        return request

    def close(self, wait_s: float = 0.0) -> None:
        """Ends the loop after the current step; whatever is running or waiting fails with a 503.

        Args:
            wait_s: wait up to this long for the loop to end (a process that exits while its thread is inside a
                oneDNN or OpenMP call aborts: "terminate called without an active exception").
        """
        self.inbox.put(None)
        if wait_s > 0 and self._thread is not threading.current_thread():
            self._thread.join(wait_s)

    def stats(self) -> dict[str, Any]:
        return {
            "running": len(self.rows),
            "waiting": len(self.line) + self.inbox.qsize(),
            "steps": self.steps,
            "step_seconds": round(self.step_seconds, 4),
            "merged": list(self._tuner_layer.merged_adapters) if self._tuner_layer is not None else [],
            "merges": self.merges,
            "decoder": self._decoder_name(),
            "packed_builds": self.packed_builds,
            **self.counts,
            "cancels": list(self.cancels),
        }

    # the loop ---------------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        import torch

        while not self._closing:
            self._collect(block=not self.rows and not self.line)
            try:
                with self.lock, torch.inference_mode():
                    self._drop_cancelled()
                    self._admit()
                    if self.rows:
                        self._step()
            except Exception as exc:  # noqa: BLE001 (the loop must outlive any step: a dead one hangs every request)
                logger.exception("a decoding step of %d chats failed", len(self.rows))
                for request in self.rows:
                    request.fail(server_error(f"generation failed: {type(exc).__name__}"))
                self.counts["failed"] += len(self.rows)
                self.rows, self.cache, self.mask = [], None, None
        gone = ApiError(503, "the model was unloaded; retry", type="server_error", code="unloaded")
        for request in [*self.rows, *self.line]:
            request.fail(gone)

    def _collect(self, block: bool) -> None:
        try:
            item = self.inbox.get() if block else self.inbox.get_nowait()
            while True:
                if item is None:
                    self._closing = True
                    return
                self.line.append(item)
                item = self.inbox.get_nowait()
        except queue.Empty:
            return

    def _drop_cancelled(self) -> None:
        keep = []
        for i, request in enumerate(self.rows):
            if request.cancelled:
                now = time.monotonic()
                begun = sum(1 for t in self._step_starts if t > request.cancelled_at)
                self.cancels.append(
                    {
                        "cancelled_at": request.cancelled_at,
                        "removed_at": now,
                        "steps_between": begun,
                        "step": self.steps,
                    }
                )
                self.counts["cancelled"] += 1
                request.fail(CANCELLED)
            else:
                keep.append(i)
        if len(keep) < len(self.rows):
            self._keep(keep)

    def _admit(self) -> None:
        budget, group = self.max_prefill_tokens, []
        while self.line and len(self.rows) + len(group) < self.max_batch and budget > 0:
            request = self.line.popleft()
            if request.cancelled:
                self.counts["cancelled"] += 1
                request.fail(CANCELLED)
                continue
            if not request.future.set_running_or_notify_cancel():
                continue
            try:
                self._prepare(request)
            except ApiError as exc:
                request.fail(exc)
                continue
            except ValueError as exc:  # a setting the generation config refuses
                request.fail(ApiError(400, " ".join(str(exc).split())))
                continue
            except Exception as exc:  # noqa: BLE001 (this request fails; the others go on)
                logger.exception("could not prepare a chat")
                request.fail(server_error(f"the chat could not be prepared: {type(exc).__name__}"))
                continue
            budget -= len(request.prompt)
            group.append(request)
        if group:
            try:
                self._prefill(group)
            except Exception as exc:  # noqa: BLE001 (these chats fail; the running ones, in their own cache, go on)
                logger.exception("a prefill of %d chats failed", len(group))
                for request in group:
                    request.fail(server_error(f"generation failed: {type(exc).__name__}"))
                self.counts["failed"] += len(group)

    def _prepare(self, request: Request) -> None:

        request.prompt = list(self.fmt.prompt_ids(self.tokenizer, request.chat))
        settings = {k: v for k, v in request.settings.items() if k in GenerationSettings.model_fields}
        request.max_new = fit(len(request.prompt), request.max_tokens, settings.get("max_new_tokens", 64), self.context)
        checked = GenerationSettings(**{**settings, "max_new_tokens": request.max_new})
        request.sample = checked.temperature > 0
        seed = request.settings.get("seed")
        request.seed = int(seed) if request.sample and seed is not None else None
        request.processors = processors(checked, self.generation_config)

    def _prefill(self, group: list[Request]) -> None:
        """The prompts of the chats admitted together, in one left-padded forward pass; each chat's first token; the
        ones that go on join the batch."""
        import torch
        from transformers import DynamicCache

        device = self._device()
        width = max(len(r.prompt) for r in group)
        ids = torch.tensor([[self.pad_id] * (width - len(r.prompt)) + r.prompt for r in group], device=device)
        mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in group], device=device)
        cache = DynamicCache()
        out = self._forward(
            [r.adapter for r in group],
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
            **{self.cache_arg: cache},
            logits_to_keep=1,
        )
        self.counts["prefills"] += len(group)
        going = []
        for i, request in enumerate(group):
            if not self._advance(request, out.logits[i, -1]):
                going.append(i)
        if not going:
            return
        if len(going) < len(group):
            index = torch.tensor(going, device=device)
            mask = mask.index_select(0, index)
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys.index_select(0, index), layer.values.index_select(0, index)
        self._join([group[i] for i in going], cache, mask)

    def _step(self) -> None:
        import torch

        self._step_starts.append(time.monotonic())
        device = self._device()
        ids = torch.tensor([[r.out[-1]] for r in self.rows], device=device)
        mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=device)], dim=1)
        positions = torch.tensor([[len(r.prompt) + len(r.out) - 1] for r in self.rows], device=device)
        out = self._forward(
            [r.adapter for r in self.rows],
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self.cache_arg: self.cache},
        )
        self.mask = mask
        self.steps += 1
        took = time.monotonic() - self._step_starts[-1]
        self.step_seconds = took if self.steps == 1 else 0.9 * self.step_seconds + 0.1 * took
        logits = out.logits[:, -1]
        keep = [i for i, request in enumerate(self.rows) if not self._advance(request, logits[i])]
        if len(keep) < len(self.rows):
            self._keep(keep)

    def _advance(self, request: Request, logits) -> bool:
        """Chooses the row's next token; True when its reply has ended (and was answered)."""
        import torch

        scores = logits.float().unsqueeze(0)
        if request.processors:
            seen = torch.tensor([request.prompt + request.out], device=scores.device)
            for processor in request.processors:
                scores = processor(seen, scores)
        if request.sample:
            if request.seed is not None and request.generator is None:
                request.generator = torch.Generator(device=scores.device).manual_seed(request.seed)
            token = int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=request.generator)[0, 0])
        else:
            token = int(torch.argmax(scores, dim=-1)[0])
        request.out.append(token)
        stopped = token in self.stop_ids
        if stopped or len(request.out) >= request.max_new:
            self._finish(request, stopped)
            return True
        if request.listener is not None:
            text = self.tokenizer.decode(request.out, skip_special_tokens=True)
            delta = stream_delta(text, request.emitted)
            if delta:
                request.emitted += delta
                request.tell("delta", delta)
        return False

    def _finish(self, request: Request, stopped: bool) -> None:
        ids = request.out[:-1] if stopped else request.out
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        reply = Reply(
            text=text,
            finish_reason="stop" if stopped else "length",
            prompt_tokens=len(request.prompt),
            completion_tokens=len(request.out),
        )
        if request.listener is not None:
            if text.startswith(request.emitted):
                rest = text[len(request.emitted) :]
                if rest:
                    request.tell("delta", rest)
            else:  # a tokenizer that rewrote text already sent: the stream cannot take it back
                logger.warning("a streamed reply was sent as %r but ends as %r", request.emitted[:80], text[:80])
            request.tell("done", reply)
        self.counts["finished"] += 1
        if not request.future.done():
            request.future.set_result(reply)

    # the batch's KV cache ---------------------------------------------------------------------------------------

    def _join(self, requests: list[Request], cache, mask) -> None:
        if self.cache is None:
            self.rows, self.cache, self.mask = list(requests), cache, mask
        else:
            import torch

            width = max(self.mask.shape[1], mask.shape[1])
            self.mask = torch.cat([left_pad(self.mask, width), left_pad(mask, width)], dim=0)
            for ours, theirs in zip(self.cache.layers, cache.layers):
                ours.keys = torch.cat([left_pad(ours.keys, width, -2), left_pad(theirs.keys, width, -2)], dim=0)
                ours.values = torch.cat([left_pad(ours.values, width, -2), left_pad(theirs.values, width, -2)], dim=0)
            self.rows.extend(requests)
        self.counts["max_running"] = max(self.counts["max_running"], len(self.rows))

    def _keep(self, keep: list[int]) -> None:
        """Only these rows stay; columns that only the others needed go."""
        import torch

        if not keep:
            self.rows, self.cache, self.mask = [], None, None
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.rows = [self.rows[i] for i in keep]
        mask = self.mask.index_select(0, index)
        first = int(mask.any(dim=0).nonzero()[0, 0])
        self.mask = mask[:, first:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[..., first:, :]
            layer.values = layer.values.index_select(0, index)[..., first:, :]

    # the model --------------------------------------------------------------------------------------------------

    def _device(self):
        return next(self.model.parameters()).device

    def _forward(self, adapters: list[str | None], **inputs):
        if not self.peft or adapters[0] is None:
            return self._packed_or_model(None, inputs)
        names = set(adapters)
        if len(names) == 1:
            (name,) = names
            if self.merge and list(self.model.peft_config) == [name]:
                self._merged(name)
                return self._packed_or_model(name, inputs)
            self._merged(None)
            if self.model.active_adapter != name:
                self.model.set_adapter(name)
            return self.model(**inputs)
        self._merged(None)
        return self.model(**inputs, adapter_names=list(adapters))  # PEFT's mixed-adapter batch

    def _decoder_name(self) -> str:
        if self.decoder_why is not None:
            return f"transformers ({self.decoder_why})"
        return "packed, int8 weights" if self.decoder == "int8" else "packed"

    def _decoder_refusal(self) -> str | None:
        """Why the packed pass does not serve this engine's model (None: it does)."""
        import torch

        if self.decoder == "transformers":
            return "decoder: transformers"
        if self.peft and not self.merge:
            return "adapters are not merged"
        base = self.model.get_base_model() if self.peft else self.model
        refusal = why_not(base)
        on_cpu = self._device().type == "cpu"
        if self.decoder == "int8" and refusal is None and (base.dtype != torch.bfloat16 or not on_cpu):
            refusal = "int8 weights take bfloat16 activations on a CPU"
        if refusal is not None and self.decoder == "int8":
            logger.warning("int8 weights asked, but %s: transformers' forward serves", refusal)
        if refusal is not None or self.decoder in ("packed", "int8"):
            return refusal
        if not on_cpu or not torch.backends.mkldnn.is_available():
            return "auto packs for a CPU with oneDNN only"
        if base.dtype not in (torch.float32, torch.bfloat16):
            return f"auto packs float32 and bfloat16 weights only ({str(base.dtype).removeprefix('torch.')} here)"
        return None

    def _packed_or_model(self, merged: str | None, inputs: dict[str, Any]):
        """The packed pass when it serves this model (rebuilt after the weights changed: another adapter merged),
        else the model's forward. ``merged``: the adapter merged into the weights (None: a plain model)."""
        if self.decoder_why is not None:
            return self.model(**inputs)
        key = (merged, self.merges)
        if self._packed_for != key:
            self._packed = None  # the old copy goes before the new one is made
            try:
                base = self.model.get_base_model() if self.peft else self.model
                self._packed = PackedDecoder(base, int8=self.decoder == "int8")
            except Exception as exc:  # noqa: BLE001 (the model's own forward still serves)
                logger.exception("the packed decoding pass could not be built; transformers' forward serves")
                self.decoder_why = f"packing failed: {type(exc).__name__}"
                return self.model(**inputs)
            self._packed_for = key
            self.packed_builds += 1
        return self._packed(
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["position_ids"],
            inputs[self.cache_arg],
            inputs.get("logits_to_keep", 1),
        )

    def _merged(self, name: str | None) -> None:
        """Makes ``name`` the one adapter merged into the base weights (None: none merged)."""
        if not self.merge:  # nothing is ever merged: no look at the layers on each step
            return
        if name is None:  # the packed copy held merged weights (PEFT may also have unmerged them itself)
            self._packed, self._packed_for = None, None
        if self._tuner_layer is None:
            from peft.tuners.tuners_utils import BaseTunerLayer

            self._tuner_layer = next(m for m in self.model.modules() if isinstance(m, BaseTunerLayer))
        now = list(self._tuner_layer.merged_adapters)
        if now == ([name] if name else []):
            return
        if now:
            self.model.unmerge_adapter()
        if name:
            if self.model.active_adapter != name:
                self.model.set_adapter(name)
            self.model.merge_adapter([name])
            self.merges += 1


def cache_argument(model) -> str:
    """The forward argument that takes a KV cache: ``cache`` from transformers 5.2x, ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def left_pad(tensor, width: int, dim: int = -1):
    """Zeros on the left of ``dim`` up to ``width``."""
    import torch

    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim=dim)


def processors(settings, generation_config=None) -> list:
    """transformers' logits processors for one row, in ``generate()``'s order: the model's own repetition penalty,
    ``no_repeat_ngram_size``, then (sampling only) temperature, the model's top-k, top-p."""
    from transformers import (
        NoRepeatNGramLogitsProcessor,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    out: list = []
    penalty = getattr(generation_config, "repetition_penalty", None)
    if penalty is not None and penalty != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(penalty))
    if settings.no_repeat_ngram_size:
        out.append(NoRepeatNGramLogitsProcessor(settings.no_repeat_ngram_size))
    if settings.temperature > 0:
        if settings.temperature != 1.0:
            out.append(TemperatureLogitsWarper(settings.temperature))
        top_k = getattr(generation_config, "top_k", None)
        if top_k:
            out.append(TopKLogitsWarper(top_k))
        if settings.top_p < 1.0:
            out.append(TopPLogitsWarper(settings.top_p))
    return out
