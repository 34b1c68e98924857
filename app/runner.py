"""Runs a pipeline from a :class:`DistillConfig` on the active stack and says where to look."""

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from app import zenml_compat
from app.leases import leased, reap
from app.prepare import git_commit, prepared, resolved_config, sections
from app.registry_ops import tracking_uri
from app.report import (
    dashboard_hint,
    data_summary,
    find_mlflow_run,
    mlflow_run_line,
    registry_lines,
    root_cause,
    step_counts,
    training_lines,
)
from app.scheduling import attach_schedule, schedule_retrain
from app.stack import run_configuration, stack_tracking_uri
from empathy_distill.config import DistillConfig
from empathy_distill.data.hashing import file_fingerprint
from empathy_distill.judging.ablation import cells
from empathy_distill.prompts import method_prompt_hash
from empathy_distill.registry.inputs import input_hashes
from empathy_distill.registry.promotion import Promotions
from empathy_distill.registry.retrain import retrain_decision


def run_pipeline(name: str, config: DistillConfig, enable_cache: bool = True, scheduled: bool = True) -> list[str]:
    """Runs the ``distill`` or ``bootstrap`` pipeline; returns the summary lines.

    Args:
        scheduled: attach ``schedule.cron`` (``retrain``, itself the scheduled call, passes False).

    Raises:
        InputError: the data file is missing (checked before ZenML starts).
        ConfigError: the active stack has no experiment tracker, or cannot run the configured schedule.
    """
    from zenml.client import Client

    # import-time: pipelines.bootstrap 3.2 s to import (app.runner alone 0.9 s)
    from pipelines.bootstrap import bootstrap

    # import-time: pipelines.distill 3.3 s to import (app.runner alone 0.9 s)
    from pipelines.distill import distill

    zenml_compat.apply()
    config = prepared(config, needs_teacher=config.bootstrap.method != "direct", needs_student=name == "distill")
    if name == "distill" and scheduled:
        schedule = attach_schedule(config)
        if schedule is not None:
            return schedule_retrain(config, schedule)
    run_config = run_configuration(config.stack)
    tracking_uri = stack_tracking_uri()
    run_name = f"{name}-{config.name}-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    settings = dict(run_config.settings)
    if config.tracking.experiment:
        settings["experiment_tracker"] = {"experiment_name": config.tracking.experiment}
    options: dict = {"step_configurations": run_config.steps} if run_config.steps else {}
    params = _pipeline_params(name, config, tracking_uri, options)
    fn = {"distill": distill, "bootstrap": bootstrap}[name]

    reap(tracking_uri)  # runs of this store whose process died are marked failed before a new one starts
    with leased(run_name), root_cause(run_name):
        run = fn.with_options(enable_cache=enable_cache, run_name=run_name, settings=settings, **options)(**params)
    run = Client().get_pipeline_run(run.id)
    if (
        not run.status.is_finished
    ):  # an orchestrator that returns once the run is submitted (Kubeflow with synchronous: false)
        return [
            f"pipeline run: {run.name} submitted ({run.status.value}) to orchestrator "
            f"'{Client().active_stack_model.name}'",
            f"  follow it: {dashboard_hint(run, '', Path(sys.executable).parent)}",
            "  it registers and gates its adapter in its last steps; then: empathy-distill lineage "
            f"models:/{config.registry.model_name}@champion",
        ]
    mlflow_run_id = find_mlflow_run(tracking_uri, run.name)
    if mlflow_run_id:
        import mlflow

        # the fully resolved config, once per run (secrets redacted; keys are only ever named, never stored)
        mlflow.MlflowClient(tracking_uri=tracking_uri).log_dict(
            mlflow_run_id, resolved_config(config), "config/resolved.json"
        )
    bin_dir = Path(sys.executable).parent
    env = f"ZENML_CONFIG_PATH={os.environ['ZENML_CONFIG_PATH']} " if os.environ.get("ZENML_CONFIG_PATH") else ""
    lines = [
        f"pipeline run: {run.name} ({run.status.value}); {step_counts(run)}",
        *data_summary(run).lines(config.bootstrap.method),
        *training_lines(run),
        mlflow_run_line(run, mlflow_run_id, tracking_uri),
        "Where to look:",
        f"  MLflow UI:  {bin_dir / 'mlflow'} ui --backend-store-uri {tracking_uri}",
        f"  ZenML CLI:  {env}{bin_dir / 'zenml'} pipeline runs list --name {run.name}",
        f"  ZenML dashboard: {dashboard_hint(run, env, bin_dir)}",
        *registry_lines(run, config, tracking_uri, bin_dir, env),
    ]
    return lines


def _pipeline_params(name: str, config: DistillConfig, tracking_uri: str, options: dict) -> dict:
    """The pipeline's parameters (config sections, the input hashes, the champion it is judged against); for
    ``distill`` ``options`` gets the ZenML model version the run creates."""
    from zenml import Model

    params = {
        **sections(config, "data", "validation", "bootstrap", "teacher"),
        "source_fingerprint": file_fingerprint(config.data.path),
        "prompt_hash": method_prompt_hash(config.bootstrap.method, config.bootstrap.strategy),
    }
    if name == "bootstrap" and config.teacher.check:  # the check's offline judges as the run's evaluation sets them
        params["evaluation"] = config.evaluation
    if name == "distill":
        promotions = Promotions.open(tracking_uri, config.registry.history)
        champion = promotions.alias(config.registry.model_name)
        params.update(
            **sections(config, "student", "training", "generation", "evaluation", "registry"),
            inputs=input_hashes(config, params["source_fingerprint"]),
            git_commit=git_commit(),
            champion_version=champion,
        )
        # one ZenML model version per run: the Model Control Plane's view of the same registered version
        options["model"] = Model(
            name=config.registry.model_name,
            description="LoRA adapters of the empathy student, one version per distill run",
            tags=[config.name],
        )
    return params


def run_ablation(config: DistillConfig, enable_cache: bool = True) -> list[str]:
    """Runs the ablation grid and returns its table."""
    from zenml.client import Client

    # import-time: pipelines.ablation 3.9 s to import (app.runner alone 0.9 s)
    from pipelines.ablation import ablation

    grid = config.ablation
    config = prepared(config, needs_teacher=any(m != "direct" for m in grid.methods))
    hashes = {f"{m}__{s}": method_prompt_hash(m, s) for m, s in cells(grid.methods, grid.strategies)}
    tracking_uri = stack_tracking_uri()
    run_name = f"ablation-{config.name}-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    # one nested MLflow run per step: cells log the same param names with different values
    settings = {
        "experiment_tracker": {
            "nested": True,
            **({"experiment_name": config.tracking.experiment} if config.tracking.experiment else {}),
        }
    }
    with root_cause(run_name):
        run = ablation.with_options(enable_cache=enable_cache, run_name=run_name, settings=settings)(
            config=config, source_fingerprint=file_fingerprint(config.data.path), prompt_hashes=hashes
        )
    run = Client().get_pipeline_run(run.id)
    table = str(run.steps["summarize_ablation"].outputs["ablation_table"][0].load())
    return [
        f"pipeline run: {run.name} ({run.status.value})",
        table,
        f"MLflow run: {find_mlflow_run(tracking_uri, run.name) or 'n/a'}  (mlflow ui --backend-store-uri "
        f"{tracking_uri})",
    ]


def run_evaluation_pipeline(config: DistillConfig, generations_version: str | None = None) -> list[str]:
    """Runs :func:`pipelines.evaluate.evaluate` and returns the report lines."""
    from zenml.client import Client

    # import-time: pipelines.evaluate 3.2 s to import (app.runner alone 0.9 s)
    from pipelines.evaluate import evaluate

    tracking_uri = stack_tracking_uri()
    run_name = f"evaluate-{config.name}-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    evaluation = config.evaluation.model_copy(
        update={"cache_dir": str(Path(config.evaluation.cache_dir).resolve())}
    )  # no data file needed here
    with root_cause(run_name):
        run = evaluate.with_options(run_name=run_name)(evaluation=evaluation, generations_version=generations_version)
    run = Client().get_pipeline_run(run.id)
    lines = [f"pipeline run: {run.name} ({run.status.value})", *training_lines(run)]
    lines.append(
        f"MLflow run: {find_mlflow_run(tracking_uri, run.name) or 'n/a'}  (mlflow ui --backend-store-uri "
        f"{tracking_uri})"
    )
    return lines


def run_retrain(config: DistillConfig, force: bool = False, enable_cache: bool = True) -> list[str]:
    """Runs the distill pipeline only when an input differs from what the champion was trained on (the decision:
    :func:`empathy_distill.registry.retrain.retrain_decision`, the same as the scheduled ``retrain_gate`` step's)."""

    ready = prepared(config, needs_teacher=False, needs_student=False)
    run, line = retrain_decision(ready, tracking_uri(), force)
    if not run:
        return [line]
    return [line, *run_pipeline("distill", config, enable_cache=enable_cache, scheduled=False)]
