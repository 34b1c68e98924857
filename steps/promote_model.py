"""Step: the promotion gate (never cached): the policy decides, ``champion`` moves under lock with compare-and-set."""

from typing import Annotated, Any

import mlflow
from zenml import get_step_context, log_metadata, step
from zenml.enums import ModelStages

from empathy_distill.config import RegistryConfig
from empathy_distill.registry.policy import gate, record_decision
from empathy_distill.registry.promotion import Promotions
from steps.console import stage_done


@step(experiment_tracker=True, enable_cache=False)
def promote_model(
    registration: dict[str, Any],
    evaluation_report: dict[str, Any],
    registry: RegistryConfig,
    champion_version: str | None = None,
) -> Annotated[dict[str, Any], "promotion_decision"]:
    """Applies ``registry.policy`` to the evaluation; every decision is appended to the promotion history.

    Args:
        registration: the version registered by this run.
        evaluation_report: its evaluation (validity, win rates with Wilson intervals).
        registry: the policy and where the history lives.
        champion_version: the champion when this run started (the one generation answered with);
            the move only happens if it still holds ``champion`` (compare-and-set).
    """
    ctx = get_step_context()
    result = gate(evaluation_report, registry.policy, champion_version)
    promotions = Promotions.open(mlflow.get_tracking_uri(), registry.history)
    entry = record_decision(
        promotions,
        registry.model_name,
        registration["version"],
        champion_version,
        result,
        "gate",
        f"zenml:{ctx.pipeline_run.name}",
    )
    if entry["promoted"] and ctx.model is not None:
        ctx.model.set_stage(ModelStages.PRODUCTION, force=True)  # ZenML archives the previous production version
    mlflow.log_dict(entry, "promotion/decision.json")
    mlflow.set_tags(
        {
            "promotion.decision": entry["decision"],
            "promotion.champion_after": str(entry["champion_after"]),
            "promotion.reasons": ("; ".join(entry["reasons"]) or "all rules met")[:5000],
        }
    )
    metadata = {
        "decision": entry["decision"],
        "champion_after": str(entry["champion_after"]),
        "reasons": "; ".join(entry["reasons"]) or "all rules met",
        "rules": "; ".join(result["rules"]),
        "judges_used": ", ".join(result["judges_used"]) or "none",
        "judges_refused": "; ".join(result["judges_refused"].values()) or "none",
        "history_seq": entry["seq"],
    }
    log_metadata(metadata)
    if ctx.model is not None:
        log_metadata({"promotion": metadata}, infer_model=True)
    for reason in result["judges_refused"].values():
        stage_done(f"not counted by the gate: {reason}")
    judges = ", ".join(result["judges_used"]) or "none"
    stage_done(
        f"v{entry['version']} {entry['decision']} (judges counted: {judges}); champion {entry['champion_after']}"
    )
    return entry
