"""The registry commands (promote, rollback, lineage) on the active stack.

The decisions themselves are core code (:mod:`empathy_distill.registry`); this layer
finds the stack's MLflow store, mirrors champion moves into ZenML's Model Control
Plane, and formats what the CLI prints.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from app.leases import reap
from app.stack import stack_tracking_uri
from empathy_distill.config import DistillConfig
from empathy_distill.errors import ConfigError
from empathy_distill.judging.results import EvaluationReport
from empathy_distill.registry.aliases import version_label
from empathy_distill.registry.history import PromotionDecision
from empathy_distill.registry.lineage import audit, audit_lines
from empathy_distill.registry.policy import gate, record_decision
from empathy_distill.registry.promotion import Promotions
from empathy_distill.registry.verify import verify as verify_version
from empathy_distill.registry.verify import verify_lines


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set (as for MLflow's own CLI), else the active ZenML stack's tracker."""

    return os.environ.get("MLFLOW_TRACKING_URI") or stack_tracking_uri()


def mlflow_client():
    import mlflow

    uri = tracking_uri()
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def promotions(config: DistillConfig):

    return Promotions.open(tracking_uri(), config.registry.history)


def _version(p, model: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return p.client.get_model_version(model, version)
    except MlflowException:
        raise ConfigError(f"model '{model}' has no version {version}") from None


def _evaluation_of(p, mv) -> EvaluationReport:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            text = Path(p.client.download_artifacts(mv.run_id, "evaluation/evaluation.json", tmp)).read_text()
        except Exception:
            raise ConfigError(
                f"version {mv.version} has no evaluation report in its MLflow run {mv.run_id}: it cannot be gated"
            ) from None
    try:
        return EvaluationReport.read(text)
    except ValidationError as e:
        raise ConfigError(
            f"version {mv.version}: evaluation/evaluation.json in run {mv.run_id} is not an evaluation report "
            f"({e.error_count()} errors, first: {e.errors()[0]['loc']} {e.errors()[0]['msg']}): it cannot be gated"
        ) from None


def sync_zenml_stage(p, model: str, version: str | None) -> str:
    """Sets ZenML's production stage on the model version that produced ``version`` (archiving the previous one)."""
    if version is None:
        return "ZenML: no champion, stage unchanged"
    zen_id = p.client.get_model_version(model, version).tags.get("lineage.zenml_model_version_id")
    if not zen_id:
        return f"ZenML: v{version} names no ZenML model version; stage unchanged"
    from uuid import UUID

    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        Client().update_model_version(
            model_name_or_id=model, version_name_or_id=UUID(zen_id), stage=ModelStages.PRODUCTION, force=True
        )
    except KeyError:
        return f"ZenML: model version {zen_id} not found in this ZenML store; stage unchanged"
    return f"ZenML: model version {zen_id} set to production"


def decision_lines(d: PromotionDecision) -> list[str]:
    head = (
        f"v{d.version} PROMOTED to champion (was {version_label(d.previous)})"
        if d.promoted
        else f"v{d.version} not promoted; champion stays {version_label(d.champion_after)}"
    )
    lines = [f"{d.action}: {head}; decision #{d.seq} recorded"]
    lines += [f"  reason: {r}" for r in d.reasons]
    if "judges_used" in d.figures:
        lines.append(f"  judges counted: {', '.join(d.figures['judges_used']) or 'none'}")
        lines += [f"  not counted: {r}" for r in d.figures.get("judges_refused", {}).values()]
    lines += [f"  repaired: {r}" for r in d.repaired]
    return lines


def promote(config: DistillConfig, version: str, force: bool = False, reason: str = "") -> tuple[int, list[str]]:
    """A manual promotion: the same gate as the pipeline's; ``force`` overrides it and records why."""

    if force and not reason.strip():
        raise ConfigError("--force needs --reason: the history records why the gate was overridden")
    p = promotions(config)
    model = config.registry.model_name
    mv = _version(p, model, version)
    champion = p.alias(model)
    result = gate(_evaluation_of(p, mv), config.registry.policy, champion)
    entry = record_decision(
        p,
        model,
        version,
        champion,
        result,
        "forced" if force else "manual",
        f"cli:{_user()}",
        forced_because=reason if force else None,
    )
    lines = decision_lines(entry)
    if entry.promoted:
        lines.append(sync_zenml_stage(p, model, version))
        return 0, lines
    if not force and not result.passed:
        lines.append(
            f"refused by the gate: `empathy-distill promote --version {version} --force --reason '...'` overrides it "
            "(recorded)"
        )
    return 1, lines


def rollback(config: DistillConfig, reason: str = "") -> list[str]:
    p = promotions(config)
    entry = p.rollback(config.registry.model_name, actor=f"cli:{_user()}", reason=reason)
    return [*decision_lines(entry), sync_zenml_stage(p, config.registry.model_name, entry.champion_after)]


def lineage(config: DistillConfig, uri: str, as_json: bool, verify: bool = False) -> tuple[int, list[str]]:
    """The audit of a version; with ``verify``, every claim re-checked (exit 1 when one does not hold)."""

    reap(tracking_uri())  # a killed run shows failed in the audit, not running forever
    p = promotions(config)
    try:
        chain = audit(p.client, p.history, uri)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    zen = chain["zenml"]
    if zen["pipeline_run_id"]:
        from zenml.client import Client

        try:
            run = Client().get_pipeline_run(zen["pipeline_run_id"])
            zen.update(
                pipeline=run.pipeline.name if run.pipeline else None,
                status=run.status.value,
                steps={n: s.status.value for n, s in run.steps.items()},
            )
        except KeyError:
            chain["missing"].append(f"ZenML pipeline run {zen['pipeline_run_id']} (not in this ZenML store)")
    code = 0
    if verify:
        v = chain["version"]
        verification = verify_version(p.client, p.history, v["name"], v["version"], tracking_uri())
        chain["verify"] = verification.as_dict()
        code = 0 if verification.ok else 1
    if as_json:
        return code, [json.dumps(chain, indent=2, default=str)]
    lines = audit_lines(chain)
    if verify:
        lines += verify_lines(verification)
    return code, lines


def _exists(p, name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        p.client.get_model_version(name, version)
        return True
    except MlflowException:
        return False


def _user() -> str:
    return os.environ.get("USER") or "unknown"
