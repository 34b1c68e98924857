"""The teacher: one small protocol, several backends, built from config.

Backends: :class:`OpenAITeacher` (any OpenAI-compatible endpoint, online),
:class:`BatchTeacher` (the Batch API), :class:`LocalTeacher` (a local
transformers model). All share the reply cache and the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from empathy_distill.config import TeacherConfig
from empathy_distill.teacher.batch import BatchTeacher
from empathy_distill.teacher.cache import ReplyCache
from empathy_distill.teacher.local import LocalTeacher
from empathy_distill.teacher.openai_client import OpenAITeacher
from empathy_distill.teacher.types import ChatRequest, ChatResult, Usage


class Teacher(Protocol):
    """What the bootstrap needs from a teacher."""

    usage: Usage

    def request(self, messages: Sequence[tuple[str, str]], tag: str = "") -> ChatRequest: ...

    async def complete_many(self, requests: Sequence[ChatRequest], desc: str = "teacher") -> list[ChatResult]: ...

    async def aclose(self) -> None: ...


def endpoint_of(cfg: TeacherConfig) -> str:
    """What answers this config's requests: the base URL (OpenAI's when none is set), or ``local:<model>``."""
    if cfg.backend == "local":
        return f"local:{cfg.model}"
    return (cfg.base_url or "https://api.openai.com/v1").rstrip("/")


def build_teacher(cfg: TeacherConfig, use_cache: bool = True) -> Teacher:
    """The backend named by ``cfg.backend`` and ``cfg.mode``, with the reply cache."""
    cache = ReplyCache(cfg.cache_path, endpoint_of(cfg)) if use_cache else None
    if cfg.backend == "local":
        return LocalTeacher(cfg, cache)
    if cfg.mode == "batch":
        return BatchTeacher(cfg, cache)

    return OpenAITeacher(cfg, cache)


__all__ = ["ChatRequest", "ChatResult", "ReplyCache", "Teacher", "Usage", "build_teacher", "endpoint_of"]
