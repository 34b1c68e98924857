"""Step: the promotion gate (never cached): the policy decides, ``champion`` moves under lock with compare-and-set."""

from typing import Annotated

import mlflow
from zenml import get_step_context, log_metadata, step
from zenml.enums import ModelStages

from empathy_distill.config import RegistryConfig
from empathy_distill.judging.results import EvaluationReport
from empathy_distill.registry.history import PromotionDecision
from empathy_distill.registry.promotion import promote_if_it_wins
from empathy_distill.registry.registration import Registration
from steps.console import stage_done


@step(experiment_tracker=True, enable_cache=False)
def promote_model(
    registration: Registration,
    evaluation_report: EvaluationReport,
    registry: RegistryConfig,
    champion_version: str | None = None,
) -> Annotated[PromotionDecision, "promotion_decision"]:
    """Applies ``registry.policy`` to the evaluation; every decision is appended to the promotion history.

    Args:
        registration: the version registered by this run.
        evaluation_report: its evaluation (validity, win rates with Wilson intervals).
        registry: the policy and where the history lives.
        champion_version: the champion when this run started (the one generation answered with);
            the move only happens if it still holds ``champion`` (compare-and-set).
    """
    ctx = get_step_context()
    result, decision = promote_if_it_wins(
        mlflow.get_tracking_uri(),
        registry,
        registration.version,
        evaluation_report,
        champion_version,
        actor=f"zenml:{ctx.pipeline_run.name}",
    )
    if decision.promoted and ctx.model is not None:
        ctx.model.set_stage(ModelStages.PRODUCTION, force=True)  # ZenML archives the previous production version
    metadata = {
        "decision": decision.decision,
        "champion_after": str(decision.champion_after),
        "reasons": "; ".join(decision.reasons) or "all rules met",
        "rules": "; ".join(result.rules),
        "judges_used": ", ".join(result.judges_used) or "none",
        "judges_refused": "; ".join(result.judges_refused.values()) or "none",
        "history_seq": decision.seq,
    }
    log_metadata(metadata)
    if ctx.model is not None:
        log_metadata({"promotion": metadata}, infer_model=True)
    for reason in result.judges_refused.values():
        stage_done(f"not counted by the gate: {reason}")
    judges = ", ".join(result.judges_used) or "none"
    stage_done(
        f"v{decision.version} {decision.decision} (judges counted: {judges}); champion {decision.champion_after}"
    )
    return decision
