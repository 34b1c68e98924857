"""An unadapted model behind the server's API (``serve --base``): a local LLM on loopback, with no registry and no key.

The packaged presets (``smollm2-135m-instruct``, ``gemma3-270m``), a model folder, a ``.gguf`` file or a hub id
load as a student does (``training/sources.py``, ``training/student.py``: the GGUF dequantised once and cached) and
answer through the same engine (continuous batching, streaming, the packed decoding pass) and the same HTTP app as a
registered version. What a client names in ``model`` does not matter: there is one model here. This is what sits in
the teacher's and the judges' seats for an offline run (``teacher.backend: openai`` with ``base_url`` at it).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empathy_distill.config import StudentConfig
from empathy_distill.serving.engine import Engine, Listener, Request
from empathy_distill.serving.pool import WARM_CHAT, Base, Version, submit_chat
from empathy_distill.training.sources import resolve_student
from empathy_distill.training.student import load_student

logger = logging.getLogger(__name__)

NUMBER = "base"
"""The one "version" such a server holds (the id in its replies: ``<name>/base``)."""


class BasePool:
    """One model, loaded at once, in the shape the server's app and router use (``versions``, ``submit``, ``stats``).

    Args:
        model: a preset, a folder, a ``.gguf`` path or a hub id (hub ids only where the process may fetch them).
        cache_dir: where a GGUF file's dequantised folder is kept.
        dtype: the weights' precision (``auto``: float32 on a CPU); ``int8`` as in ``Pool``.
        decoder: ``Engine``'s ``decoder``.
        system_prompt: put before a chat that has no system turn ("" : the model's template decides).
        chat_template: a template for a model without one (as ``student.chat_template``).
    """

    def __init__(
        self,
        model: str,
        cache_dir: str | Path,
        dtype: str = "auto",
        decoder: str = "auto",
        max_batch: int = 32,
        system_prompt: str = "",
        chat_template: str | None = None,
    ):
        import torch

        start = time.monotonic()
        folder, self.source = resolve_student(model, cache_dir)
        weights = "bfloat16" if dtype == "int8" else dtype
        student = StudentConfig(model=folder, dtype=weights, chat_template=chat_template)
        tokenizer, lm, fmt = load_student(folder, student)
        if torch.cuda.is_available():
            lm = lm.to("cuda")
        lm.eval()
        self.model_name = Path(model).name.removesuffix(".gguf") if "/" in model or model.endswith(".gguf") else model
        self.tracking_uri = ""
        lock = threading.Lock()
        engine = Engine(
            lm,
            tokenizer,
            fmt,
            max_batch=max_batch,
            lock=lock,
            name="decode-base",
            decoder="int8" if dtype == "int8" else decoder,
        )
        base = Base(key=(folder, weights, str(chat_template)), model=lm, engine=engine, lock=lock)
        version = Version(NUMBER, None, base, system_prompt, {}, 0.0)
        submit_chat(version, WARM_CHAT, 1, {}, None).future.result()
        version.loaded_seconds = round(time.monotonic() - start, 2)
        self.versions = {NUMBER: version}
        self.parameters = sum(p.numel() for p in lm.parameters())
        logger.info("loaded %s (%.1fM parameters) in %.1f s", model, self.parameters / 1e6, version.loaded_seconds)

    def submit(
        self,
        version: Version,
        chat: list[dict[str, str]],
        max_tokens: int | None,
        settings: dict,
        listener: Listener | None = None,
    ) -> Request:
        return submit_chat(version, chat, max_tokens, settings, listener)

    def stats(self) -> dict[str, Any]:
        return {NUMBER: self.versions[NUMBER].base.engine.stats()}

    def close(self, wait_s: float = 30.0) -> None:
        engine = self.versions[NUMBER].base.engine
        engine.close()
        engine.close(wait_s)


@dataclass
class BaseRouter:
    """Every name a client sends answers with the one model (the registry's aliases mean nothing here)."""

    pool: BasePool
    default: str = NUMBER
    routes: dict[str, str | None] = field(default_factory=lambda: {NUMBER: NUMBER})
    errors: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> Version:
        version = self.pool.versions[NUMBER]
        version.last_used = time.monotonic()
        return version

    def models(self) -> list[dict[str, Any]]:
        return [{"id": self.pool.model_name, "object": "model", "created": 0, "owned_by": "empathy-distill"}]

    def health(self) -> dict[str, Any]:
        return {
            "model": self.pool.model_name,
            "default": NUMBER,
            "base": self.pool.source,
            "parameters": self.pool.parameters,
            "routes": dict(self.routes),
            "loaded": [NUMBER],
            "errors": {},
            "engines": self.pool.stats(),
        }

    def stop(self) -> None:
        self.pool.close()
