"""Runs a pipeline from a :class:`DistillConfig` on the active stack and says where to look."""

import logging
import os
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from empathy_distill.config import DistillConfig
from empathy_distill.data.hashing import file_fingerprint
from empathy_distill.errors import ConfigError, StepFailed
from empathy_distill.judging.report import degenerate_cell
from empathy_distill.prompts import method_prompt_hash
from empathy_distill.registry.promotion import version_label as _v
from empathy_distill.tracking import redacted


def prepared(config: DistillConfig, needs_teacher: bool, needs_student: bool = True) -> DistillConfig:
    """The config with every path made absolute (steps may run elsewhere than the CLI), checked early.

    Raises:
        InputError: the data file is missing, a folder, unreadable or empty.
        ConfigError: a teacher is needed and its key variable is unset; a model cannot be loaded from here.
    """
    from empathy_distill.preflight import check_run

    check_run(config, needs_teacher, needs_student)
    if needs_teacher and config.teacher.backend == "openai":
        from empathy_distill.teacher.openai_client import resolve_api_key

        resolve_api_key(config.teacher)  # fail before the pipeline starts when the key is missing

    def absolute(value: str) -> str:
        return str(Path(value).resolve())

    from empathy_distill.tracking import without_password

    # a database password in registry.history never travels as a pipeline parameter (ZenML stores those): the URL
    # goes without it, and libpq (the history's PostgreSQL driver) reads it from PGPASSWORD in this process and the
    # steps it runs; a remote orchestrator's pods get PGPASSWORD from a secret (docs/production-stack.md)
    history, password = without_password(history_location(config.registry.history))
    if password is not None:
        held = os.environ.get("PGPASSWORD")
        if held is not None and held != password:
            raise ConfigError("registry.history carries a password and PGPASSWORD holds another: keep one of them")
        os.environ["PGPASSWORD"] = password

    return config.model_copy(
        update={
            "data": config.data.model_copy(update={"path": absolute(config.data.path)}),
            "teacher": config.teacher.model_copy(update={"cache_path": absolute(config.teacher.cache_path)}),
            "student": config.student.model_copy(update={"cache_dir": absolute(config.student.cache_dir)}),
            "training": config.training.model_copy(update={"output_dir": absolute(config.training.output_dir)}),
            "evaluation": config.evaluation.model_copy(update={"cache_dir": absolute(config.evaluation.cache_dir)}),
            "registry": config.registry.model_copy(
                update={
                    "history": history,
                    "deploy": config.registry.deploy.model_copy(
                        update={"state_dir": absolute(config.registry.deploy.state_dir)}
                    ),
                }
            ),
        }
    )


def history_location(history: str | None) -> str | None:
    """A file path made absolute; a database URL as it is."""
    if history is None or "://" in history:
        return history
    return str(Path(history).resolve())


def git_commit() -> str:
    """The code version: HEAD of this checkout, ``-dirty`` when it has uncommitted changes, ``unknown`` outside git."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def attach_schedule(config: DistillConfig):
    """A ZenML ``Schedule`` for ``schedule.cron`` on an orchestrator that runs schedules; None without a cron.

    Raises:
        ConfigError: a cron on an orchestrator that cannot schedule (the local one): says what to do instead.
    """
    if not config.schedule.cron:
        return None
    from zenml.client import Client
    from zenml.config.schedule import Schedule

    orchestrator = Client().active_stack.orchestrator
    if not orchestrator.config.is_schedulable:
        raise ConfigError(
            f"schedule.cron is set ('{config.schedule.cron}') but the orchestrator '{orchestrator.name}' "
            f"({orchestrator.flavor}) cannot run schedules: "
            "run `empathy-distill schedule --config CONFIG` for a crontab line (or systemd timer) that calls "
            "`empathy-distill retrain`, "
            "or use a stack whose orchestrator schedules (Kubeflow, Kubernetes, Vertex, SageMaker, AzureML, Airflow)"
        )
    return Schedule(cron_expression=config.schedule.cron)


def schedule_retrain(config: DistillConfig, schedule) -> list[str]:
    """Registers the ``retrain`` pipeline with the orchestrator on ``schedule``.

    Each tick runs the retrain gate at run time: the data fingerprint, the input hashes and the
    champion are read then, not frozen at the time the schedule was made, and ``distill`` is
    submitted only when an input differs from the champion's (what ``empathy-distill retrain`` does).
    """
    from zenml.client import Client

    from app import zenml_compat
    from app.stack import run_configuration
    from pipelines.retrain import retrain

    zenml_compat.apply()
    run_config = run_configuration(config.stack)
    options = {"step_configurations": run_config.steps} if run_config.steps else {}
    retrain.with_options(
        schedule=schedule, run_name=f"retrain-{config.name}-{{date}}-{{time}}", settings=run_config.settings, **options
    )(config=config)
    stack = Client().active_stack_model
    return [
        f"scheduled: the retrain pipeline on cron '{config.schedule.cron}' on stack '{stack.name}'; "
        "each run starts distill only when an input differs from the champion's"
    ]


def sections(config: DistillConfig, *names: str) -> dict:
    """The named sections of ``config``, as pipeline parameters."""
    return {name: getattr(config, name) for name in names}


def run_pipeline(name: str, config: DistillConfig, enable_cache: bool = True, scheduled: bool = True) -> list[str]:
    """Runs the ``distill`` or ``bootstrap`` pipeline; returns the summary lines.

    Args:
        scheduled: attach ``schedule.cron`` (``retrain``, itself the scheduled call, passes False).

    Raises:
        InputError: the data file is missing (checked before ZenML starts).
        ConfigError: the active stack has no experiment tracker, or cannot run the configured schedule.
    """
    from zenml import Model
    from zenml.client import Client

    from app import zenml_compat
    from app.stack import mlflow_tracking_uri, run_configuration
    from empathy_distill.registry.inputs import input_hashes
    from empathy_distill.registry.promotion import Promotions
    from pipelines.bootstrap import bootstrap
    from pipelines.distill import distill

    zenml_compat.apply()
    config = prepared(config, needs_teacher=config.bootstrap.method != "direct", needs_student=name == "distill")
    if name == "distill" and scheduled:
        schedule = attach_schedule(config)
        if schedule is not None:
            return schedule_retrain(config, schedule)
    run_config = run_configuration(config.stack)
    tracking_uri = mlflow_tracking_uri()
    run_name = f"{name}-{config.name}-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    settings = dict(run_config.settings)
    if config.tracking.experiment:
        settings["experiment_tracker"] = {"experiment_name": config.tracking.experiment}
    params = {
        **sections(config, "data", "validation", "bootstrap", "teacher"),
        "source_fingerprint": file_fingerprint(config.data.path),
        "prompt_hash": method_prompt_hash(config.bootstrap.method, config.bootstrap.strategy),
    }
    options: dict = {"step_configurations": run_config.steps} if run_config.steps else {}
    champion = None
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
    fn = {"distill": distill, "bootstrap": bootstrap}[name]
    from app.leases import leased, reap

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
    ingest = run.steps["validate_dialogues"].outputs["ingest_report"][0].load()
    training = run.steps["validate_training_sets"].outputs["training_report"][0].load()
    boot = run.steps["bootstrap_responses"].outputs["bootstrap_report"][0].load()
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
        f"dialogues: {ingest['dialogues_kept']} kept ({ingest['train_dialogues']} train / {ingest['test_dialogues']} "
        "test), "
        f"rows kept {ingest['rows_kept']}, quarantined {ingest['rows_quarantined']}, data hash "
        f"{ingest['data_hash'][:19]}",
        f"training sets ({config.bootstrap.method}/{boot.get('strategy', 'none')}): {training['sft_rows']} SFT rows, "
        f"{training['dpo_pairs']} DPO pairs, "
        f"{training['rows_quarantined']} quarantined, test leakage {training['test_leakage']}; teacher requests "
        f"{boot.get('teacher_requests', 0)}"
        + (f", budget stop: {boot['budget_exhausted']}" if boot.get("budget_exhausted") else ""),
        *training_lines(run),
        f"MLflow run: {mlflow_run_id or 'n/a (every step was cached)'}",
        "Where to look:",
        f"  MLflow UI:  {bin_dir / 'mlflow'} ui --backend-store-uri {tracking_uri}",
        f"  ZenML CLI:  {env}{bin_dir / 'zenml'} pipeline runs list --name {run.name}",
        f"  ZenML dashboard: {dashboard_hint(run, env, bin_dir)}",
        *registry_lines(run, config, tracking_uri, bin_dir, env),
    ]
    return lines


def dashboard_hint(run, env: str, bin_dir: Path) -> str:
    """The run's page on the connected ZenML server, or how to start a local one."""
    from zenml.utils.dashboard_utils import get_run_url

    url = get_run_url(run)
    return (
        url
        or f"{env}{bin_dir / 'zenml'} login --local (a local server with the dashboard; a team's: "
        "docs/production-stack.md)"
    )


def run_ablation(config: DistillConfig, enable_cache: bool = True) -> list[str]:
    """Runs the ablation grid and returns its table."""
    from zenml.client import Client

    from app.stack import mlflow_tracking_uri
    from empathy_distill.judging.ablation import cells
    from pipelines.ablation import ablation

    grid = config.ablation
    config = prepared(config, needs_teacher=any(m != "direct" for m in grid.methods))
    hashes = {f"{m}__{s}": method_prompt_hash(m, s) for m, s in cells(grid.methods, grid.strategies)}
    tracking_uri = mlflow_tracking_uri()
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

    from app.stack import mlflow_tracking_uri
    from pipelines.evaluate import evaluate

    tracking_uri = mlflow_tracking_uri()
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


class _StepFailures(logging.Filter):
    """Keeps what a step raised when the local orchestrator logs "Step X failed." with its traceback.

    A failure around the step function (the experiment tracker's server gone, an artifact store that
    refuses a write) leaves the step run without exception info; this is where its cause is. Unless
    ``-v`` asked for tracebacks, the record is dropped: the command's last line names the step and the cause.
    """

    def __init__(self, keep_traceback: bool) -> None:
        super().__init__()
        self.keep_traceback = keep_traceback
        self.by_step: dict[str, BaseException] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.msg == "Step %s failed." and record.args:
            self.by_step[str(record.args[0])] = record.exc_info[1]
            return self.keep_traceback
        return True


@contextmanager
def root_cause(run_name: str):
    """Turns ZenML's "failure in step(s): X" into :class:`StepFailed` naming the step and what it raised."""
    failures = _StepFailures(keep_traceback=logging.getLogger("app").isEnabledFor(logging.INFO))
    orchestrator_log = logging.getLogger("zenml.orchestrators.local.local_orchestrator")
    orchestrator_log.addFilter(failures)
    try:
        yield
    except Exception as exc:
        from zenml.client import Client

        try:
            run = Client().get_pipeline_run(run_name)
            failed = [s for s in run.steps.values() if s.status.value == "failed"]
        except Exception:  # no run was created (e.g. the stack is broken): the original error is the root cause
            raise exc from None
        for step_run in failed:
            info = step_run.exception_info
            if info is not None:
                cause = (info.source or "Exception").rsplit(".", 1)[-1]
                raise StepFailed(step_run.name, cause, info.message or info.traceback.strip().splitlines()[-1]) from exc
            if (raised := failures.by_step.get(step_run.name)) is not None:
                raise StepFailed(step_run.name, type(raised).__name__, str(raised)[:500]) from exc
        raise
    finally:
        orchestrator_log.removeFilter(failures)


def find_mlflow_run(tracking_uri: str, run_name: str) -> str | None:
    """The MLflow run ZenML's tracker opened for this pipeline run (it is named after it)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = (
        client.search_runs(experiments, filter_string=f"attributes.run_name = '{run_name}'", max_results=1)
        if experiments
        else []
    )
    return runs[0].info.run_id if runs else None


def step_counts(run) -> str:
    """``steps: N ran, M cached`` (a rerun with unchanged inputs runs none)."""
    statuses = [s.status.value for s in run.steps.values()]
    return f"steps: {statuses.count('completed')} ran, {statuses.count('cached')} cached"


def training_lines(run) -> list[str]:
    """One line per training stage and one for generation, where the run had them."""
    lines = []
    for step_name, output in (("train_sft", "sft_adapter"), ("train_dpo", "dpo_adapter")):
        if step_name in run.steps:
            adapter = run.steps[step_name].outputs[output][0].load()
            lines.append(
                f"{adapter.stage.upper()}: {adapter.global_step} steps on {adapter.rows} rows, adapter "
                f"{adapter.weights_hash[:19]}"
            )
    if "evaluate_responses" in run.steps:
        report = run.steps["evaluate_responses"].outputs["evaluation_report"][0].load()
        validity = "valid" if report.get("valid") else "NOT VALID: " + "; ".join(report.get("invalid_reasons", []))
        lines.append(
            f"evaluation ({validity}; tuned student vs opponent; ties count half; invalid verdicts are not losses; "
            f"95% {report.get('ci_method', 'wilson')} intervals):"
        )
        for c in report["comparisons"]:
            lines.append(
                f"  vs {c['opponent']:<8} judge {c['judge']}: win rate {c['win_rate']:.3f} [{c['ci_low']:.3f}, "
                f"{c['ci_high']:.3f}], "
                f"W/T/L {c['wins']}/{c['ties']}/{c['losses']}, invalid {c['invalid']}, consistency "
                f"{c['position_consistency']:.2f}, "
                f"LC win rate {c['length_controlled_win_rate']:.3f}, degenerate {degenerate_cell(c)}"
            )
    if "generate_responses" in run.steps:
        table = run.steps["generate_responses"].outputs["generations"][0].load()
        lines.append(f"generation: {len(table)} test prompts answered by the base and the tuned student")
        if len(table):
            row = table.iloc[0]
            lines.append(f"  e.g. {row['user'].splitlines()[-1][:80]!r} -> tuned: {row['tuned_response'][:100]!r}")
    return lines


def registry_lines(run, config: DistillConfig, tracking_uri: str, bin_dir: Path, env: str) -> list[str]:
    """The registered version, the gate's decision, and the commands to serve, audit and roll back."""
    if "register_model" not in run.steps:
        return []
    reg = run.steps["register_model"].outputs["registration"][0].load()
    lines = [
        f"registered: {reg['uri']} (alias challenger), judged against champion: "
        f"{_v(reg.get('champion_judged_against'))}"
    ]
    if "promote_model" in run.steps:
        d = run.steps["promote_model"].outputs["promotion_decision"][0].load()
        rules = "; ".join(d["figures"].get("rules", []))
        if d["promoted"]:
            lines.append(
                f"promotion: v{d['version']} PROMOTED to champion (was {_v(d['previous'])}); rules met: {rules}"
            )
        else:
            lines.append(
                f"promotion: v{d['version']} not promoted (champion stays {_v(d['champion_after'])}): "
                f"{'; '.join(d['reasons'])}"
            )
        lines.append(f"  decision #{d['seq']} recorded in the promotion history")
    champion_after = d["champion_after"] if "promote_model" in run.steps else None
    if "deploy_model" in run.steps:
        dep = run.steps["deploy_model"].outputs["deployment"][0].load()
        lines.append(
            f"deployed: v{dep['version']} at {dep['url']} ("
            + ("server started; " if dep.get("started") else "")
            + f"serving it {dep['ready_seconds']} s after the decision)"
            if dep["deployed"]
            else f"deploy: nothing to do ({dep['reason']})"
        )
    cli = f"{env}{bin_dir / 'empathy-distill'}"
    if "promote_model" in run.steps and champion_after is None:
        version = reg["version"]
        return [
            *lines,
            "Next (no version holds champion, so `serve` refuses to start until one does):",
            f"  audit this version:   {cli} lineage models:/{config.registry.model_name}/{version}",
            f"  try it anyway:        {cli} serve --model models:/{config.registry.model_name}/{version} --port "
            f"{config.registry.deploy.port}",
            f"  override the gate:    {cli} promote --version {version} --force --reason '...' (recorded as forced)",
        ]
    lines += [
        "Next:",
        f"  serve the champion:   {cli} serve --port {config.registry.deploy.port} (OpenAI-style: "
        f'http://127.0.0.1:{config.registry.deploy.port}/v1, model "champion"; it follows every promotion)',
        f"  audit its lineage:    {cli} lineage models:/{config.registry.model_name}@champion",
        f"  roll back:            {cli} rollback",
    ]
    return lines


def resolved_config(config: DistillConfig) -> dict:
    """The config as logged: secrets redacted (only environment variable names are kept anyway)."""
    return redacted(config.model_dump())
