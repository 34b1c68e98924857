"""The judges: anything that gives pairwise verdicts (``A``/``B``/``tie``/``None``) on responses to the same dialogue.

:class:`ScorerJudge` wraps the offline scorer (no network); :class:`LLMJudge` asks any
OpenAI-compatible endpoint through the teacher client (cache, retries, budget).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from empathy_distill.data.training_sets import user_turn
from empathy_distill.errors import JudgeError
from empathy_distill.judging.reference import ReferenceJudge
from empathy_distill.judging.scorer import fit_scorer
from empathy_distill.judging.verdict import parse_verdict
from empathy_distill.prompts import load_template, render
from empathy_distill.registry.prompt_registry import run_prompt_uris
from empathy_distill.teacher import build_teacher, endpoint_of
from empathy_distill.tracing import trace_requests, tracing_active


class PairJudge(Protocol):
    """Verdicts (``A``/``B``/``tie``/``None``) for response pairs on the same dialogue."""

    name: str

    def verdicts(
        self, situations: list[str], utterances: list[str], first: list[str], second: list[str]
    ) -> list[str | None]: ...


@dataclass
class ScorerJudge:
    """The offline scorer as a judge (deterministic: both orders agree)."""

    scorer: Any
    name: str = "scorer"

    def verdicts(self, situations, utterances, first, second):
        contexts = [user_turn(s, u) for s, u in zip(situations, utterances)]
        return self.scorer.verdicts(contexts, first, second)


@dataclass
class LLMJudge:
    """A judge over any OpenAI-compatible endpoint, through the teacher client (cache, retries, budget).

    A request that failed after its retries (endpoint down, refused, budget spent) is
    never a verdict: with ``on_error="fail"`` it raises :class:`JudgeError`; with
    ``"continue"`` it becomes an invalid comparison, counted in ``request_errors``.
    """

    client: Any
    name: str = "llm"
    on_error: str = "fail"
    request_errors: int = 0
    prompt_uris: dict[str, str | None] = field(default_factory=dict, repr=False)
    """MLflow run id -> the judge template's ``prompts:/`` URI: the registry is asked once per run, not per pass."""

    def verdicts(self, situations, utterances, first, second):
        system = load_template("judge_system")
        requests = [
            self.client.request(
                [("system", system), ("user", render("judge", situation=s, utterance=u, response_a=a, response_b=b))],
                tag=f"judge_{self.name}",
            )
            for s, u, a, b in zip(situations, utterances, first, second)
        ]

        async def run():
            try:
                return await self.client.complete_many(requests, desc=f"judge {self.name}")
            finally:
                await self.client.aclose()

        start = time.time_ns()
        results = asyncio.run(run())
        verdicts = [parse_verdict(r.text) if r.ok else None for r in results]
        self.trace(requests, results, verdicts, start)
        failed = [r for r in results if not r.ok]
        self.request_errors += len(failed)
        if failed and self.on_error == "fail":
            raise JudgeError(
                f"judge '{self.name}': {len(failed)} of {len(results)} requests failed ({failed[-1].error}); "
                "set evaluation.on_judge_error=continue to record them as invalid instead"
            )
        return verdicts

    def trace(self, requests, results, verdicts, start: int) -> None:
        """The judge's requests as one MLflow trace (inside a tracked run), each with the verdict parsed from it."""

        if not tracing_active():
            return
        outcomes = [
            f"error: {r.error}" if not r.ok else f"verdict: {v}" if v else "unparsed" for r, v in zip(results, verdicts)
        ]
        trace_requests(
            f"judge {self.name}",
            requests,
            results,
            outcomes,
            settings=self.client.cfg.tracing,
            endpoint=endpoint_of(self.client.cfg),
            prompt=self.prompt_uri(),
            stage_start_ns=start,
        )

    def prompt_uri(self) -> str | None:
        """The judge template's version in the prompt registry, for the active run (synced on its first pass)."""
        import mlflow

        run = mlflow.active_run()
        if run is None:
            return None
        if run.info.run_id not in self.prompt_uris:
            self.prompt_uris[run.info.run_id] = run_prompt_uris(["judge"]).get("judge")
        return self.prompt_uris[run.info.run_id]


def build_judges(cfg, dialogues: pd.DataFrame) -> list[PairJudge]:
    """Judges from an :class:`~empathy_distill.config.EvaluationConfig`; the scorer is fitted on train ratings."""
    judges: list[PairJudge] = []
    for judge in cfg.judges:
        if judge.kind == "scorer":
            judges.append(
                ScorerJudge(
                    fit_scorer(dialogues, margin=cfg.scorer_margin, l2=cfg.scorer_l2, cache_dir=cfg.cache_dir),
                    name=judge.name,
                )
            )
        elif judge.kind == "reference":
            judges.append(ReferenceJudge.from_dialogues(dialogues, name=judge.name, margin=cfg.reference_margin))
        else:
            if judge.endpoint is None:
                raise ValueError(f"judge '{judge.name}' of kind llm needs an endpoint")
            judges.append(LLMJudge(build_teacher(judge.endpoint), name=judge.name, on_error=cfg.on_judge_error))
    return judges
