"""Step: the final adapter becomes a new version of the registered model, alias ``challenger``, with its lineage
(:func:`~empathy_distill.registry.registration.register_student` does the MLflow side)."""

from typing import Annotated

from zenml import get_step_context, log_metadata, step

from empathy_distill.config import GenerationSettings, RegistryConfig, StudentConfig, TrainingConfig
from empathy_distill.data.reports import BootstrapReport, DataReports, IngestReport, TrainingSetReport
from empathy_distill.judging.results import EvaluationReport
from empathy_distill.registry.registration import Registration, register_student
from empathy_distill.training.adapter import Adapter
from steps.console import stage_done


@step(experiment_tracker=True)
def register_model(
    adapter: Adapter | None,
    student_base: str,
    evaluation_report: EvaluationReport,
    ingest_report: IngestReport,
    bootstrap_report: BootstrapReport,
    training_report: TrainingSetReport,
    registry: RegistryConfig,
    student: StudentConfig,
    generation: GenerationSettings,
    training: TrainingConfig,
    teacher_model: str | None,
    inputs: dict[str, str],
    git_commit: str,
) -> Annotated[Registration, "registration"]:
    """Logs the pyfunc model (adapter as an artifact, base reference in model_config), registers it, tags the
    version and links the prompt versions it used.

    Args:
        adapter: the final adapter (DPO's, or SFT's for an SFT-only run).
        student_base: the base model folder or hub id.
        evaluation_report: the judged figures (tagged on the version and on its logged model).
        ingest_report, bootstrap_report, training_report: what the data and bootstrap steps reported.
        registry: model name.
        student: chat template and dtype, for loading.
        generation: the generation settings that were evaluated (the served defaults).
        training: the training settings (params of the logged model).
        teacher_model: the teacher's model, or None for ``direct``.
        inputs: the retrain gate's input hashes.
        git_commit: the code version.
    """
    if adapter is None:
        raise ValueError("nothing to register: training.stages trained no adapter")
    ctx = get_step_context()
    zenml = {"run_id": str(ctx.pipeline_run.id), "run_name": ctx.pipeline_run.name}
    if ctx.model is not None:
        zenml.update(model_version_id=str(ctx.model.id), model_version=str(ctx.model.version))
    registration = register_student(
        adapter_path=adapter.path,
        adapter_hash=adapter.weights_hash,
        student_base=student_base,
        reports=DataReports(ingest=ingest_report, bootstrap=bootstrap_report, training_sets=training_report),
        evaluation=evaluation_report,
        registry=registry,
        student=student,
        generation=generation,
        training=training,
        teacher_model=teacher_model,
        inputs=inputs,
        git_commit=git_commit,
        zenml=zenml,
    )
    if ctx.model is not None:  # the same version, seen from ZenML's Model Control Plane
        log_metadata(
            {
                "mlflow_model": registration.model,
                "mlflow_version": registration.version,
                "mlflow_run_id": registration.mlflow_run_id,
                "adapter_hash": registration.adapter_hash,
            },
            infer_model=True,
        )
    stage_done(f"registered {registration.uri} (alias challenger); prompts {', '.join(registration.prompts)}")
    return registration
