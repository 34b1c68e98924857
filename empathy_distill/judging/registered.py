"""The judges as MLflow scorers, registered in the run's experiment, so that a team reuses the same judge
definition across runs (``mlflow.genai.scorers.get_scorer(name=...)``) and MLflow's evaluation can call it.

- **reference** (nothing fitted): a ``@scorer`` whose code is the reference judge's: ``inputs`` holds the
  dialogue (``situation``, ``utterance``), ``outputs`` the two replies (``response_a``, ``response_b``),
  ``expectations`` the dialogue's recorded ``top_replies`` and ``low_replies``; the value is ``A``, ``B`` or ``tie``.
  MLflow 3.17 refuses to register code-defined scorers outside Databricks unless the environment sets
  ``MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS=true`` (loading one executes its code): we never set it; a team whose
  server it trusts does, and the reference judge is registered from then on.
- **llm**: MLflow's own judge (``make_judge``) with the judge prompt (``judge_system`` and ``judge`` templates),
  the endpoint's model and base URL, temperature 0, verdict ``A``/``B``/``tie``; the key stays in the environment.
- **scorer** is not registered: its head is fitted on each run's training ratings, and MLflow's scorer registry
  stores a scorer's code, not fitted weights (there is no artifact slot on a registered scorer). The run logs what
  the scorer needs to be rebuilt (the data hash and its settings); registering it would register a different judge.

Registration is idempotent: a judge whose serialized definition equals the latest registered version's is not
registered again.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from mlflow.genai.scorers import scorer

from empathy_distill.data.training_sets import user_turn
from empathy_distill.judging.reference import ReferenceJudge
from empathy_distill.prompts import load_template

logger = logging.getLogger(__name__)

PREFIX = "empathy-"
CUSTOM_CODE_REFUSED = (
    "MLflow registers code-defined scorers only where MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS=true (loading one runs its "
    "code; a trusted, self-managed server sets it) or on Databricks"
)
NOT_REGISTERED = {
    "scorer": "fitted per run on the training ratings; MLflow's scorer registry stores code, not fitted weights"
}


@scorer(
    name="empathy-reference",
    description="Pairwise empathy verdict (A, B or tie): which reply is closer to the dialogue's top-rated recorded "
    "replies than to its low-rated ones (MiniLM-L6 similarity, margin 0.01; nothing fitted).",
)
def reference_verdict(inputs, outputs, expectations):
    # import-time: none to save; MLflow registers this function's source alone, so its import travels inside it
    from empathy_distill.judging.registered import reference_feedback

    return reference_feedback(inputs, outputs, expectations)


def reference_feedback(inputs: dict[str, Any], outputs: dict[str, Any], expectations: dict[str, Any]) -> Any:
    """The reference judge's verdict on one pair, as MLflow ``Feedback`` (value ``A``/``B``/``tie``)."""
    from mlflow.entities import Feedback

    situation, utterance = str(inputs["situation"]), str(inputs["utterance"])
    top, low = list(expectations["top_replies"]), list(expectations["low_replies"])
    judge = ReferenceJudge({user_turn(situation, utterance): (top, low)} if top and low and top != low else {})
    (verdict,) = judge.verdicts([situation], [utterance], [str(outputs["response_a"])], [str(outputs["response_b"])])
    return Feedback(value=verdict, rationale="similarity to the top- minus the low-rated recorded replies")


def llm_instructions() -> str:
    """The LLM judge's prompt in MLflow's judge form: the judge's system text and its question, with the dialogue
    and the two replies read from ``{{ inputs }}`` and ``{{ outputs }}``."""
    question = load_template("judge")
    ask = question[question.index("Which response") :]
    return (
        f"{load_template('judge_system')}\n\n"
        "The dialogue (what someone shared, the situation and what they said): {{ inputs }}\n"
        "The two listeners' replies (response_a is Response A, response_b is Response B): {{ outputs }}\n\n"
        f"{ask}"
    )


def llm_judge(name: str, endpoint: Any) -> Any:
    from mlflow.genai.judges import make_judge

    return make_judge(
        name=PREFIX + name,
        instructions=llm_instructions(),
        model=f"openai:/{endpoint.model}",
        base_url=endpoint.base_url,
        feedback_value_type=Literal["A", "B", "tie"],
        inference_params={"temperature": 0.0},
        description=f"Pairwise empathy verdict by {endpoint.model} (the project's judge prompt).",
    )


def definition(judge: Any) -> str:
    dumped = dict(judge.model_dump())
    dumped.pop("mlflow_version", None)
    return json.dumps(dumped, sort_keys=True, default=str)


def register(judge: Any, experiment_id: str) -> tuple[str, int | None]:
    """Registers ``judge`` unless its latest registered version has the same definition; (name, version)."""
    from mlflow.genai.scorers import get_scorer

    try:
        latest = get_scorer(name=judge.name, experiment_id=experiment_id)
    except Exception:  # noqa: BLE001 (MLflow raises when no version of that name exists)
        latest = None
    if latest is not None and definition(latest) == definition(judge):
        return judge.name, getattr(latest, "_registered_scorer_version", None) or _version(latest)
    registered = judge.register(experiment_id=experiment_id)
    return judge.name, _version(registered)


def _version(judge: Any) -> int | None:
    for attr in ("scorer_version", "_scorer_version", "_registered_version"):
        value = getattr(judge, attr, None)
        if value is not None:
            return int(value)
    return None


def register_judges(judges: list[Any], experiment_id: str) -> dict[str, str]:
    """Each configured judge registered where MLflow can hold its definition: judge name -> ``registered as <name>``
    or why not."""
    out: dict[str, str] = {}
    for judge in judges:
        if judge.kind in NOT_REGISTERED:
            out[judge.name] = f"not registered: {NOT_REGISTERED[judge.kind]}"
            continue
        definition_ = reference_verdict if judge.kind == "reference" else llm_judge(judge.name, judge.endpoint)
        try:
            name, version = register(definition_, experiment_id)
        except Exception as exc:  # noqa: BLE001 (a registry that refuses is reported, the evaluation stands)
            reason = str(exc).split("\n")[0]
            if "MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS" in str(exc):
                reason = CUSTOM_CODE_REFUSED
            logger.info("judge %s not registered in MLflow: %s", judge.name, reason)
            out[judge.name] = f"not registered: {reason}"
            continue
        out[judge.name] = f"registered as {name}" + (f" v{version}" if version else "")
    return out
