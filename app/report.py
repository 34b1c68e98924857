"""What a finished pipeline run prints: the steps' figures, the root cause of a failure, where to look next."""

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from empathy_distill.config import DistillConfig
from empathy_distill.data.reports import BootstrapReport, IngestReport, TrainingSetReport
from empathy_distill.errors import StepFailed
from empathy_distill.judging.report import degenerate_cell
from empathy_distill.registry.aliases import version_label
from empathy_distill.registry.history import PromotionDecision
from empathy_distill.teacher.estimate import spent


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


def figures_run(run, tracking_uri: str) -> tuple[str | None, str | None]:
    """(MLflow run id, pipeline run name) of the run that logged the evaluation and training figures shown in the
    summary: this run's own when its steps ran; when they were cached, the run that first ran them (a cached step
    logs nothing to the new MLflow run)."""
    from zenml.client import Client

    for name in ("evaluate_responses", "train_dpo", "train_sft", "validate_training_sets"):
        step = run.steps.get(name)
        if step is None:
            continue
        if step.status.value != "cached" or step.original_step_run_id is None:
            return find_mlflow_run(tracking_uri, run.name), run.name
        try:
            original_step = Client().get_run_step(step.original_step_run_id)
            original = Client().get_pipeline_run(original_step.pipeline_run_id)
        except KeyError:
            return None, None
        return find_mlflow_run(tracking_uri, original.name), original.name
    return find_mlflow_run(tracking_uri, run.name), run.name


def mlflow_run_line(run, own_run_id: str | None, tracking_uri: str) -> str:
    """``MLflow run: <id>``, pointing at the run that has the figures; a rerun whose steps were cached says where
    its own (promotion-only) run is."""
    figures_id, figures_name = figures_run(run, tracking_uri)
    if figures_id is None or figures_id == own_run_id:
        return f"MLflow run: {own_run_id or figures_id or 'n/a (every step was cached)'}"
    ran = [n for n, s in run.steps.items() if s.status.value == "completed"]
    own = f"this run's own MLflow run {own_run_id} has what ran now ({', '.join(ran)})" if own_run_id else "none ran"
    reused = f"the figures above, logged by {figures_name}, whose steps this rerun reused"
    return f"MLflow run: {figures_id} ({reused}; {own})"


def teacher_part(run, boot: BootstrapReport) -> str:
    """``teacher: N sent (M cached), $X``: what this run sent; a reused bootstrap step sent nothing now."""
    if boot.method == "direct":
        return "teacher: none (method direct)"

    step = run.steps.get("bootstrap_responses")
    if step is not None and step.status.value == "cached":
        return f"teacher: 0 sent (step reused: its first run sent {boot.teacher_requests:,} for ${boot.cost_usd:.2f})"
    return spent(boot)


@dataclass(frozen=True)
class DataSummary:
    """What a run's data steps reported, read from their artifacts in one place (the summary's first lines)."""

    ingest: IngestReport
    bootstrap: BootstrapReport
    sets: TrainingSetReport
    teacher: str
    """``teacher: N sent ...`` (:func:`teacher_part`)."""

    def lines(self, method: str) -> list[str]:
        ingest, sets, stop = self.ingest, self.sets, self.bootstrap.budget_exhausted
        budget = f", budget stop: {stop}" if stop else ""
        return [
            f"dialogues: {ingest.dialogues_kept} kept ({ingest.train_dialogues} train / {ingest.test_dialogues} test), "
            f"rows kept {ingest.rows_kept}, quarantined {ingest.rows_quarantined}, data hash {ingest.data_hash[:19]}",
            f"training sets ({method}/{self.bootstrap.strategy}): {sets.sft_rows} SFT rows, {sets.dpo_pairs} DPO "
            f"pairs, {sets.rows_quarantined} quarantined, test leakage {sets.test_leakage}; {self.teacher}{budget}",
        ]


def data_summary(run) -> DataSummary:
    """The ingest, bootstrap and training-set reports of a finished distill or bootstrap run."""
    boot = run.steps["bootstrap_responses"].outputs["bootstrap_report"][0].load()
    return DataSummary(
        ingest=run.steps["validate_dialogues"].outputs["ingest_report"][0].load(),
        bootstrap=boot,
        sets=run.steps["validate_training_sets"].outputs["training_report"][0].load(),
        teacher=teacher_part(run, boot),
    )


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
            lines += [f"  warning: {w}" for w in adapter.warnings]
    if "evaluate_responses" in run.steps:
        report = run.steps["evaluate_responses"].outputs["evaluation_report"][0].load()
        validity = "valid" if report.valid else "NOT VALID: " + report.invalid_text()
        lines.append(
            f"evaluation ({validity}; tuned student vs opponent; ties count half; invalid verdicts are not losses; "
            f"95% {report.ci_method} intervals):"
        )
        for c in report.comparisons:
            lines.append(
                f"  vs {c.opponent:<8} judge {c.judge}: win rate {c.win_rate:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}], "
                f"W/T/L {c.wins}/{c.ties}/{c.losses}, invalid {c.invalid}, consistency {c.position_consistency:.2f}, "
                f"LC win rate {c.length_controlled_win_rate:.3f}, degenerate {degenerate_cell(c)}"
            )
    if "generate_responses" in run.steps:
        table = run.steps["generate_responses"].outputs["generations"][0].load()
        lines.append(f"generation: {len(table)} test prompts answered by the base and the tuned student")
        if len(table):
            row = table.iloc[0]
            cut = {
                side: " [cut at max_new_tokens]" if row.get(f"{side}_finished") == "false" else ""
                for side in ("base", "tuned")
            }
            lines.append(f"  e.g. {row['user'].splitlines()[-1][:80]!r}")
            lines.append(f"    base:  {row['base_response'][:160]!r}{cut['base']}")
            lines.append(f"    tuned: {row['tuned_response'][:160]!r}{cut['tuned']}")
    return lines


def decision_summary(d: PromotionDecision) -> list[str]:
    """The gate's decision in two lines: promoted (and the rules met) or not (and why), and its history entry."""
    if d.promoted:
        rules = "; ".join(d.figures.get("rules", []))
        first = f"promotion: v{d.version} PROMOTED to champion (was {version_label(d.previous)}); rules met: {rules}"
    else:
        stays = version_label(d.champion_after)
        first = f"promotion: v{d.version} not promoted (champion stays {stays}): {'; '.join(d.reasons)}"
    return [first, f"  decision #{d.seq} recorded in the promotion history"]


def registry_lines(run, config: DistillConfig, tracking_uri: str, bin_dir: Path, env: str) -> list[str]:
    """The registered version, the gate's decision, and the commands to serve, audit and roll back."""
    if "register_model" not in run.steps:
        return []
    reg = run.steps["register_model"].outputs["registration"][0].load()
    lines = [
        f"registered: {reg.uri} (alias challenger), judged against champion: "
        f"{version_label(reg.champion_judged_against)}"
    ]
    champion_after = None
    if "promote_model" in run.steps:
        d = run.steps["promote_model"].outputs["promotion_decision"][0].load()
        lines += decision_summary(d)
        champion_after = d.champion_after
    if "deploy_model" in run.steps:
        dep = run.steps["deploy_model"].outputs["deployment"][0].load()
        lines.append(
            f"deployed: v{dep.version} at {dep.url} ("
            + ("server started; " if dep.started else "")
            + f"serving it {dep.ready_seconds} s after the decision)"
            if dep.deployed
            else f"deploy: nothing to do ({dep.reason})"
        )
    cli = f"{env}{bin_dir / 'empathy-distill'}"
    if "promote_model" in run.steps and champion_after is None:
        version = reg.version
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


def dashboard_hint(run, env: str, bin_dir: Path) -> str:
    """The run's page on the connected ZenML server, or how to start a local one."""
    from zenml.utils.dashboard_utils import get_run_url

    url = get_run_url(run)
    return (
        url
        or f"{env}{bin_dir / 'zenml'} login --local (a local server with the dashboard; a team's: "
        "docs/production-stack.md)"
    )
