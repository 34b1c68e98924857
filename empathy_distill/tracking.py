"""MLflow logging for the active run (the run ZenML's MLflow tracker opened).

Only plain values reach MLflow: paths, counts, hashes. Secrets are never passed
here; configs are logged after :func:`redacted` drops anything named like a key.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import urlparse

from empathy_distill.data.reports import BootstrapReport, CheckReport, DataReports, IngestReport, TrainingSetReport
from empathy_distill.judging.degenerate import REASONS as DEGENERATE_REASONS
from empathy_distill.judging.results import EvaluationReport
from empathy_distill.judging.stats import WIN_RATE_FIELDS
from empathy_distill.training.plots import loss_curve_png

logger = logging.getLogger(__name__)

_SECRET_NAMES = ("key", "api_key", "token", "secret", "password")
_SECRET_SUFFIXES = ("_key", "_token", "_secret", "_password")


def looks_secret(name: str) -> bool:
    """``api_key``, ``hf_token``, ... but not ``api_key_env`` (a variable's name) or ``max_tokens``."""
    name = name.lower()
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]*:)(?P<password>[^\s@/]*)@")


def redact_urls(text: str) -> str:
    """Every ``scheme://user:password@host`` in ``text`` with the password replaced by ``<redacted>``."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + "<redacted>@", text)


def without_password(url: str | None) -> tuple[str | None, str | None]:
    """(the URL without its password, the password or None): the URL can travel, the password stays in the
    environment of the processes that connect."""
    if not url or "://" not in url:
        return url, None
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def masked_url(url: str) -> str:
    """A database URL with its password as ``***``, for messages."""
    parsed = urlparse(url)
    return url.replace(f":{parsed.password}@", ":***@") if parsed.password else url


def redacted(tree: Any) -> Any:
    """A copy of a config tree without values whose key looks secret (``*_env`` names stay) and without the
    password of any URL in it."""
    if isinstance(tree, dict):
        return {k: ("<redacted>" if looks_secret(k) else redacted(v)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redacted(v) for v in tree]
    if isinstance(tree, str):
        return redact_urls(tree)
    return tree


def log_dataset(table: Any, name: str, source: str, digest: str, context: str) -> None:
    """The table as an MLflow dataset input of the active run (its page lists it under Datasets)."""
    import mlflow

    if mlflow.active_run() is None:
        return
    import warnings

    with warnings.catch_warnings():
        # MLflow guesses a source class from the path string and warns that several match (a local file and
        # an artifact path); the string is what the lineage needs either way.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        # int columns (turn indexes) cannot hold missing values: true, and nothing is missing in a validated table
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        mlflow.log_input(mlflow.data.from_pandas(table, source=source, name=name, digest=digest[:36]), context=context)


def log_rows(rows: Any, artifact_file: str) -> None:
    """Rows (records, a DataFrame or JSON lines) as an MLflow table of the active run (``mlflow.log_table``): the
    run page lists it under Artifacts and the UI renders it as a table; nested values become JSON text."""
    import mlflow
    import pandas as pd

    if mlflow.active_run() is None:
        return
    if isinstance(rows, str):
        rows = [json.loads(line) for line in rows.splitlines() if line.strip()]
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    frame = frame.astype(object).where(frame.notna(), None)
    frame = frame.map(lambda v: json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) else v)
    if frame.empty and not len(frame.columns):
        frame = pd.DataFrame({"note": []})
    mlflow.log_table(frame, artifact_file=artifact_file)


TEACHER_TABLE_COLUMNS = ("dialogue_id", "role", "status", "reason", "original", "raw")


def run_description(evaluation: EvaluationReport, reports: DataReports, model: str, version: str) -> str:
    """One paragraph for the top of the MLflow run page: what was trained on what, what it scored, what was
    registered."""
    ingest, boot, sets = reports.ingest, reports.bootstrap, reports.training_sets
    figures = "; ".join(
        f"vs {c.opponent} ({c.judge}) {c.win_rate:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]"
        for c in evaluation.comparisons
    )
    return (
        f"Distilled on {ingest.dialogues_kept} dialogues from `{ingest.data_path}` (data hash "
        f"{ingest.data_hash[:19]}, "
        f"{ingest.rows_quarantined} rows quarantined) with method "
        f"{boot.method}/{boot.strategy}: "
        f"{sets.sft_rows} SFT rows, {sets.dpo_pairs} DPO pairs. "
        f"Evaluation on {evaluation.test_dialogues} test dialogues is "
        f"{'valid' if evaluation.valid else 'NOT valid'} "
        f"(win rates of the tuned student, 95% {evaluation.ci_method} intervals): {figures}. "
        f"Registered as `{model}` version {version} (alias challenger); "
        f"audit with `empathy-distill lineage models:/{model}/{version}`."
    )


def log_ingest(report: IngestReport, quarantine_jsonl: str, prefix: str = "ingest", table: Any = None) -> None:
    """Logs an ingestion report: params, counts as metrics, report and quarantine as artifacts, the kept rows as a
    dataset."""
    import mlflow

    if mlflow.active_run() is None:
        logger.warning("no active MLflow run; ingestion report not logged")
        return
    mlflow.log_params(
        {
            f"{prefix}.data_path": report.data_path,
            f"{prefix}.format": report.format,
            f"{prefix}.data_hash": report.data_hash,
            f"{prefix}.split_method": report.split_method,
        }
    )
    mlflow.set_tag("data_hash", report.data_hash)
    metrics = {
        f"{prefix}.{key}": float(getattr(report, key))
        for key in (
            "records_read",
            "dialogues_read",
            "responses_read",
            "rows_kept",
            "rows_quarantined",
            "dialogues_kept",
            "train_dialogues",
            "test_dialogues",
        )
    }
    metrics.update({f"{prefix}.quarantine.{k}": float(v) for k, v in report.quarantine_reasons.items()})
    mlflow.log_metrics(metrics)
    mlflow.log_dict(report.as_json(), f"{prefix}/report.json")
    mlflow.log_text(quarantine_jsonl, f"{prefix}/quarantine.jsonl")
    log_rows(quarantine_jsonl, f"tables/{prefix}_quarantine.json")
    if table is not None:
        log_dataset(table, "dialogues", report.data_path, report.data_hash, context="ingest")


def log_teacher_check(report: CheckReport) -> None:
    """The teacher check's figures as metrics (``teacher_check.<judge>.win_rate``, ``.ci_low``, ...) and its report."""
    import mlflow

    if mlflow.active_run() is None:
        return
    metrics = {f"teacher_check.{k}": v for k, v in report.counts().items()}
    for name, rate in report.judges.items():
        metrics.update(
            {f"teacher_check.{name}.{k}": float(getattr(rate, k)) for k in ("win_rate", "ci_low", "ci_high")}
        )
    mlflow.log_metrics(metrics)
    mlflow.log_text(report.model_dump_json(indent=2), "teacher_check/report.json")


def log_bootstrap(report: BootstrapReport, teacher_model: str | None, log: Any = None) -> None:
    """Method, strategy, prompt hash and teacher as params; counts, tokens and cost per stage as metrics; with the
    rewrite ``log``, every dialogue the teacher did not rewrite (invalid, failed, over budget, skipped) as a table
    with its reason and the teacher's raw reply."""
    import mlflow

    if mlflow.active_run() is None:
        return
    mlflow.log_params(
        {
            "bootstrap.method": report.method,
            "bootstrap.strategy": report.strategy,
            "bootstrap.prompt_hash": report.prompt_hash,
            "bootstrap.teacher_model": teacher_model or "none",
        }
    )
    mlflow.set_tag("prompt_hash", report.prompt_hash)
    metrics = {f"bootstrap.{k}": v for k, v in report.counts().items()}
    usage = report.teacher_usage
    if usage is not None:
        metrics.update({f"teacher.{k}": v for k, v in usage.counts().items()})
        for stage, row in usage.by_stage.items():
            metrics.update({f"teacher.{stage}.{k}": float(v) for k, v in row.items()})
    mlflow.log_metrics(metrics)
    mlflow.log_dict(report.as_json(), "bootstrap/report.json")
    if log is not None and len(log):
        rejected = log[log["status"] != "ok"]
        log_rows(rejected[[c for c in TEACHER_TABLE_COLUMNS if c in rejected.columns]], "tables/teacher_rejected.json")


def log_training_sets(
    report: TrainingSetReport, quarantine_jsonl: str, sets: dict[str, Any] | None = None, source: str = ""
) -> None:
    """Final SFT/DPO counts, the training-set quarantine, and each set as a dataset (digest: the report's
    ``<name>_hash``)."""
    import mlflow

    if mlflow.active_run() is None:
        return
    mlflow.log_metrics({f"training_sets.{k}": v for k, v in report.counts().items()})
    mlflow.log_dict(report.as_json(), "training_sets/report.json")
    mlflow.log_text(quarantine_jsonl, "training_sets/quarantine.jsonl")
    log_rows(quarantine_jsonl, "tables/training_sets_quarantine.json")
    for name, table in (sets or {}).items():
        log_dataset(table, name, source, report.digest(name), context="training")


def log_training_stage(result: Any, params: dict[str, Any], curve_keys: tuple[str, ...] = ("loss",)) -> None:
    """Params, the loss-curve PNG, the adapter folder and its hashes for one stage (``StageResult``)."""
    import tempfile
    from pathlib import Path

    import mlflow

    if mlflow.active_run() is None:
        return
    stage = result.stage
    mlflow.log_params({f"{stage}.{k}": v for k, v in params.items()})
    mlflow.set_tags(
        {
            f"{stage}.adapter_hash": result.hash_after,
            f"{stage}.adapter_changed": str(result.hash_before != result.hash_after),
        }
    )
    mlflow.log_metrics(
        {
            f"{stage}.global_step": float(result.global_step),
            f"{stage}.rows": float(result.rows),
            f"{stage}.resumed_from_step": float(result.resumed_from_step),
            f"{stage}.processes": float(result.processes),
        }
    )
    if result.eval_metrics:
        mlflow.log_metrics({f"{stage}.train_pairs.{k.replace('/', '.')}": v for k, v in result.eval_metrics.items()})
    if getattr(result, "warnings", None):
        mlflow.set_tag(f"{stage}.warning", " | ".join(result.warnings)[:5000])
    with tempfile.TemporaryDirectory() as tmp:
        png = loss_curve_png(
            result.history,
            Path(tmp) / f"{stage}_curves.png",
            f"{stage.upper()} ({result.global_step} steps)",
            curve_keys,
        )
        if png is not None:
            mlflow.log_artifact(str(png), "plots")
    mlflow.log_artifacts(result.adapter_dir, f"adapters/{stage}")


def evaluation_metrics(report: EvaluationReport, prefix: str = "eval") -> dict[str, float]:
    """Win rates, intervals, counts, consistency, LC win rates, degenerate counts and kappas, by metric name."""
    metrics = {f"{prefix}.valid": float(report.valid)}
    for c in report.comparisons:
        name = f"{prefix}.{c.opponent}.{c.judge}"
        for key in (*WIN_RATE_FIELDS, "request_errors", "position_consistency", "length_controlled_win_rate"):
            metrics[f"{name}.{key}"] = float(getattr(c, key))
        # candidate / opponent: counts per reason (examples are in evaluation.json)
        for side, counts in (("candidate", c.degenerate.candidate), ("opponent", c.degenerate.opponent)):
            for reason in (*DEGENERATE_REASONS, "total"):
                metrics[f"{name}.degenerate.{side}.{reason}"] = float(getattr(counts, reason))
    for a in report.agreement:
        metrics[f"{prefix}.{a.opponent}.kappa.{'_'.join(a.judges)}"] = float(a.kappa)
    return metrics


def log_model_figures(
    model_id: str, evaluation: EvaluationReport, params: dict[str, Any], ingest: IngestReport
) -> None:
    """The logged model behind a registered version carries what it was judged at (the evaluation's metrics,
    linked to the dialogues dataset the run lists), and what it was trained with (params): the version page
    shows them."""
    import mlflow
    from mlflow.entities import Dataset

    dataset = Dataset(
        name="dialogues",
        digest=ingest.data_hash[:36],
        source_type="local",
        source=json.dumps({"uri": ingest.data_path}),
    )
    mlflow.log_metrics(evaluation_metrics(evaluation), model_id=model_id, dataset=dataset)
    # MLflow copies the run's params onto a model logged in it: only what it does not hold yet is added (a key
    # logged twice is a database error, not an update)
    held = mlflow.get_logged_model(model_id).params
    new = {k: str(v)[:6000] for k, v in params.items() if k not in held}
    if new:
        mlflow.log_model_params(new, model_id=model_id)


def log_verdicts(rows: list[dict[str, Any]], label: str = "") -> None:
    """One table per judge (``tables/verdicts_<judge>.json``, an ablation's under its label): dialogue, both
    replies, each order's verdict, the counted outcome, the degenerate flags."""
    by_judge: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_judge.setdefault(row["judge"], []).append(row)
    folder = f"tables/{label}" if label else "tables"
    for judge, judged in by_judge.items():
        log_rows(judged, f"{folder}/verdicts_{judge}.json")


def log_evaluation(report: EvaluationReport, files: dict[str, Any], prefix: str = "eval") -> None:
    """Win rates, intervals, counts, consistency and LC win rates as metrics; JSON, table and plot as artifacts.

    A NaN (nothing valid to score) is logged as NaN, never skipped, and ``<prefix>.valid``
    (1 or 0) with the ``<prefix>.invalid_reasons`` tag says whether the figures can be trusted.
    """
    import mlflow

    if mlflow.active_run() is None:
        return
    metrics = evaluation_metrics(report, prefix)
    mlflow.log_metrics(metrics)
    mlflow.set_tags(
        {
            f"{prefix}.valid": str(report.valid).lower(),
            f"{prefix}.ci_method": report.ci_method,
            f"{prefix}.invalid_reasons": report.invalid_text()[:5000] or "none",
        }
    )
    folder = "evaluation" if prefix == "eval" else f"evaluation/{prefix.split('.', 1)[-1]}"
    for path in files.values():
        mlflow.log_artifact(str(path), folder)


def log_promotion(entry: dict[str, Any]) -> None:
    """A gate's decision in the active run: the history entry as a file, its outcome as tags."""
    import mlflow

    mlflow.log_dict(entry, "promotion/decision.json")
    mlflow.set_tags(
        {
            "promotion.decision": entry["decision"],
            "promotion.champion_after": str(entry["champion_after"]),
            "promotion.reasons": ("; ".join(entry["reasons"]) or "all rules met")[:5000],
        }
    )


STUDENT_PARAMS = ("model", "vocab_size", "parameters", "key", "architecture")
STUDENT_METRICS = ("pretrain_loss_last", "build_seconds", "warmup_chats", "warmup_units_dropped")


def log_student(info: dict[str, Any]) -> None:
    """The student's base in the active run: its model, size and source as params, how it was built as metrics."""
    import mlflow

    mlflow.log_params({f"student.{k}": info[k] for k in STUDENT_PARAMS if info.get(k) is not None})
    mlflow.log_metrics({f"student.{k}": float(info[k]) for k in STUDENT_METRICS if info.get(k) is not None})
    if info.get("source") == "gguf":
        mlflow.log_params({f"student.gguf.{k}": v for k, v in info["gguf"].items() if k != "path" and v is not None})
        mlflow.log_params({f"student.converter.{k}": v for k, v in info.get("converter", {}).items()})
