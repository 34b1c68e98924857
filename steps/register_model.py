"""Step: the final adapter becomes a new version of the registered model, alias ``challenger``, with its lineage."""

from typing import Annotated, Any

import mlflow
from zenml import get_step_context, log_metadata, step

from empathy_distill.config import GenerationSettings, RegistryConfig, StudentConfig
from empathy_distill.prompts import STUDENT_SYSTEM, load_template
from empathy_distill.registry.lineage import version_description, version_tags
from empathy_distill.registry.promotion import CHALLENGER
from empathy_distill.registry.pyfunc import bundle_base, log_student_model
from empathy_distill.tracking import run_description
from empathy_distill.training.adapter import Adapter
from steps.console import stage_done


@step(experiment_tracker=True)
def register_model(
    adapter: Adapter | None,
    student_base: str,
    evaluation_report: dict[str, Any],
    ingest_report: dict[str, Any],
    bootstrap_report: dict[str, Any],
    training_report: dict[str, Any],
    registry: RegistryConfig,
    student: StudentConfig,
    generation: GenerationSettings,
    teacher_model: str | None,
    inputs: dict[str, str],
    git_commit: str,
) -> Annotated[dict[str, Any], "registration"]:
    """Logs the pyfunc model (adapter as an artifact, base reference in model_config), registers it and tags the
    version.

    Args:
        adapter: the final adapter (DPO's, or SFT's for an SFT-only run).
        student_base: the base model folder or hub id.
        evaluation_report: the judged figures (tagged on the version, summarized in the run description).
        ingest_report, bootstrap_report, training_report: what the data and bootstrap steps reported.
        registry: model name.
        student: chat template and dtype, for loading.
        generation: the generation settings that were evaluated (the served defaults).
        teacher_model: the teacher's model, or None for ``direct``.
        inputs: the retrain gate's input hashes.
        git_commit: the code version.
    """
    if adapter is None:
        raise ValueError("nothing to register: training.stages trained no adapter")
    ctx = get_step_context()
    reports = {"ingest": ingest_report, "bootstrap": bootstrap_report, "training_sets": training_report}
    run_id = mlflow.active_run().info.run_id
    zenml = {"run_id": str(ctx.pipeline_run.id), "run_name": ctx.pipeline_run.name}
    if ctx.model is not None:
        zenml.update(model_version_id=str(ctx.model.id), model_version=str(ctx.model.version))
    tags = version_tags(
        ingest=reports["ingest"],
        bootstrap=reports["bootstrap"],
        teacher_model=teacher_model,
        evaluation=evaluation_report,
        adapter_hash=adapter.weights_hash,
        base_model=student_base,
        git_commit=git_commit,
        zenml=zenml,
        mlflow_run_id=run_id,
        inputs=inputs,
    )
    info = log_student_model(
        adapter.path,
        student_base,
        bundle_base=bundle_base(student_base, registry.bundle_base_max_mb),
        chat_template=student.chat_template,
        dtype=student.dtype,
        generation=generation.model_dump(include={"max_new_tokens", "temperature", "top_p", "no_repeat_ngram_size"}),
        system_prompt=load_template(STUDENT_SYSTEM),
        model_name=registry.model_name,
        tags={"adapter_hash": adapter.weights_hash},
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(registry.model_name, version, key, value)
    client.update_model_version(
        registry.model_name, version, description=version_description(registry.model_name, version, tags)
    )
    client.set_registered_model_alias(registry.model_name, CHALLENGER, version)
    registration = {
        "model": registry.model_name,
        "version": version,
        "uri": f"models:/{registry.model_name}/{version}",
        "model_id": info.model_id,
        "mlflow_run_id": run_id,
        "adapter_hash": adapter.weights_hash,
        "champion_judged_against": evaluation_report.get("champion_version"),
        **zenml,
    }
    mlflow.set_tags(
        {
            "registry.model": registry.model_name,
            "registry.version": version,
            "mlflow.note.content": run_description(evaluation_report, reports, registration),
        }
    )
    if ctx.model is not None:  # the same version, seen from ZenML's Model Control Plane
        log_metadata(
            {
                "mlflow_model": registry.model_name,
                "mlflow_version": version,
                "mlflow_run_id": run_id,
                "adapter_hash": adapter.weights_hash,
            },
            infer_model=True,
        )
    stage_done(f"registered {registration['uri']} (alias challenger)")
    return registration
