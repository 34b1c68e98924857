"""A local ``transformers`` teacher for air-gapped runs: any causal LM folder with a chat template."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from empathy_distill.config import TeacherConfig
from empathy_distill.teacher.budget import Budget
from empathy_distill.teacher.cache import ReplyCache
from empathy_distill.teacher.openai_client import BUDGET_ERROR
from empathy_distill.teacher.types import BudgetExhausted, ChatRequest, ChatResult, Usage

logger = logging.getLogger(__name__)


class LocalTeacher:
    """Generates with a local model (``cfg.model`` is its folder); same cache and budget as the others."""

    def __init__(self, cfg: TeacherConfig, cache: ReplyCache | None = None, budget: Budget | None = None) -> None:
        self.cfg = cfg
        self.cache = cache
        self.budget = budget or Budget(cfg)
        self.usage = Usage()
        self._model = None
        self._tokenizer = None

    def request(self, messages: Sequence[tuple[str, str]], tag: str = "") -> ChatRequest:
        return ChatRequest(
            tuple(messages), self.cfg.model, self.cfg.temperature, self.cfg.max_tokens, self.cfg.seed, tag
        )

    def _load(self) -> None:
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.cfg.model)
            self._model = AutoModelForCausalLM.from_pretrained(self.cfg.model)
            self._model.eval()

    def _generate(self, req: ChatRequest) -> ChatResult:
        import torch

        self._load()
        tok = self._tokenizer
        ids = tok.apply_chat_template(
            req.openai_messages(), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        if req.seed is not None:
            torch.manual_seed(req.seed)
        with torch.no_grad():
            out = self._model.generate(
                **ids,
                max_new_tokens=req.max_tokens,
                do_sample=req.temperature > 0,
                temperature=req.temperature if req.temperature > 0 else None,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
        new = out[0, ids["input_ids"].shape[1] :]
        return ChatResult(
            key=req.key,
            text=tok.decode(new, skip_special_tokens=True),
            prompt_tokens=int(ids["input_ids"].shape[1]),
            completion_tokens=int(new.shape[0]),
            attempts=1,
        )

    async def complete(self, req: ChatRequest) -> ChatResult:
        if self.cache is not None and (hit := self.cache.get(req.key)) is not None:
            self.usage.add(req.tag, hit, 0.0)
            return hit
        try:
            self.budget.reserve()
        except BudgetExhausted as exc:
            return ChatResult(key=req.key, error=f"{BUDGET_ERROR}: {exc}")
        result = await asyncio.to_thread(self._generate, req)
        if self.cache is not None:
            self.cache.put(req, result)
        self.usage.add(req.tag, result, 0.0)
        return result

    async def complete_many(self, requests: Sequence[ChatRequest], desc: str = "teacher") -> list[ChatResult]:
        from tqdm.auto import tqdm

        results = []
        for req in tqdm(requests, desc=desc, unit="req", disable=None):
            results.append(await self.complete(req))
        return results

    async def aclose(self) -> None:
        return None
