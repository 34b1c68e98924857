"""A trained adapter becomes a new version of the registered model (alias ``challenger``), with its lineage.

One call does what the ``register_model`` step needs from MLflow: the pyfunc model logged into the active run
(adapter as an artifact, base by reference), the version's lineage tags and description, the prompt versions it
used (MLflow's prompt registry: registered where new, linked to the run and to the logged model), and the
logged model's own metrics and params, so that the version page shows what it was judged at.
"""

from __future__ import annotations

from typing import Any

import mlflow
from pydantic import BaseModel, ConfigDict

from empathy_distill.config import TrainingConfig
from empathy_distill.data.reports import BootstrapReport, DataReports
from empathy_distill.judging.results import EvaluationReport
from empathy_distill.prompts import STUDENT_SYSTEM, load_template
from empathy_distill.registry.aliases import CHALLENGER
from empathy_distill.registry.lineage import version_description, version_tags
from empathy_distill.registry.prompt_registry import (
    LINEAGE_TAG,
    lineage_value,
    link_prompts,
    sync_prompts,
    used_templates,
)
from empathy_distill.registry.pyfunc import bundle_base, log_student_model
from empathy_distill.tracking import log_model_figures, run_description


class Registration(BaseModel):
    """What a registration made: the version, where it came from, the prompt versions it used (the ``registration``
    artifact of a run)."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    model: str
    version: str
    uri: str
    model_id: str
    mlflow_run_id: str
    adapter_hash: str
    champion_judged_against: str | None
    prompts: list[str]
    zenml: dict[str, str] = {}
    """The ZenML run (and model version) that registered it."""


def register_student(
    *,
    adapter_path: str,
    adapter_hash: str,
    student_base: str,
    reports: DataReports,
    evaluation: EvaluationReport,
    registry: Any,
    student: Any,
    generation: Any,
    training: TrainingConfig,
    teacher_model: str | None,
    inputs: dict[str, str],
    git_commit: str,
    zenml: dict[str, str],
) -> Registration:
    """Logs, registers and tags a new version from the active MLflow run.

    Args:
        adapter_path, adapter_hash: the trained adapter and its weights' hash.
        student_base: the base model folder, hub id or GGUF cache folder.
        reports: ``ingest``, ``bootstrap`` and ``training_sets`` reports of the run.
        evaluation: the judged figures.
        registry, student, generation: the run's ``RegistryConfig``, ``StudentConfig`` and ``GenerationSettings``.
        training: the training settings, recorded on the logged model as flat params (``sft.learning_rate``).
        teacher_model: the teacher's model, or None for ``direct``.
        inputs: the retrain gate's input hashes.
        git_commit: the code version.
        zenml: the ZenML run (and model version) ids, for the lineage tags.
    """
    run_id = mlflow.active_run().info.run_id
    boot = reports.bootstrap
    tags = version_tags(
        ingest=reports.ingest,
        bootstrap=boot,
        teacher_model=teacher_model,
        evaluation=evaluation,
        adapter_hash=adapter_hash,
        base_model=student_base,
        git_commit=git_commit,
        zenml=zenml,
        mlflow_run_id=run_id,
        inputs=inputs,
    )
    client = mlflow.MlflowClient()
    every = sync_prompts(client, alias=registry.model_name)
    used = [every[t] for t in _templates_used(boot, evaluation)]
    tags[LINEAGE_TAG] = lineage_value(used)
    info = _log_model(adapter_path, adapter_hash, student_base, registry, student, generation)
    version = str(info.registered_model_version)
    link_prompts(client, used, run_id=run_id, model_id=info.model_id)
    log_model_figures(
        info.model_id,
        evaluation,
        model_params(boot, student_base, flat(training.model_dump(exclude={"output_dir"}))),
        reports.ingest,
    )
    _tag_version(client, registry.model_name, version, tags)
    registration = Registration(
        model=registry.model_name,
        version=version,
        uri=f"models:/{registry.model_name}/{version}",
        model_id=info.model_id,
        mlflow_run_id=run_id,
        adapter_hash=adapter_hash,
        champion_judged_against=evaluation.champion_version,
        prompts=[r.uri for r in used],
        zenml=zenml,
    )
    note = run_description(evaluation, reports, registration.model, version)
    mlflow.set_tags({"registry.model": registry.model_name, "registry.version": version, "mlflow.note.content": note})
    return registration


def _templates_used(bootstrap: BootstrapReport, evaluation: EvaluationReport) -> list[str]:
    """The prompt templates this run used: its method's and strategy's, the student's, an LLM judge's."""
    return used_templates(bootstrap.method, bootstrap.strategy, bool(evaluation.judge_admission))


def _tag_version(client: Any, model: str, version: str, tags: dict[str, str]) -> None:
    """The lineage tags and the description on the new version; ``challenger`` moves to it."""
    for key, value in tags.items():
        client.set_model_version_tag(model, version, key, value)
    client.update_model_version(model, version, description=version_description(model, version, tags))
    client.set_registered_model_alias(model, CHALLENGER, version)


def model_params(bootstrap: BootstrapReport, student_base: str, training: dict[str, Any]) -> dict[str, Any]:
    """What the logged model was made with: method, strategy, base, and the training settings (prefixed: MLflow
    already holds the pyfunc's ``model_config`` as params of the same model, ``base_model`` among them)."""
    return {
        "bootstrap.method": bootstrap.method,
        "bootstrap.strategy": bootstrap.strategy,
        "student.base": student_base,
        **{f"training.{k}": v for k, v in training.items()},
    }


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"sft": {"learning_rate": 1e-3}}`` -> ``{"sft.learning_rate": 1e-3}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _log_model(adapter_path: str, adapter_hash: str, student_base: str, registry: Any, student: Any, generation: Any):
    """The pyfunc model (the adapter as an artifact, the base by reference or bundled), registered as a new version."""
    return log_student_model(
        adapter_path,
        student_base,
        bundle_base=bundle_base(student_base, registry.bundle_base_max_mb),
        chat_template=student.chat_template,
        dtype=student.dtype,
        generation=generation.model_dump(include={"max_new_tokens", "temperature", "top_p", "no_repeat_ngram_size"}),
        system_prompt=load_template(STUDENT_SYSTEM),
        model_name=registry.model_name,
        tags={"adapter_hash": adapter_hash},
    )
