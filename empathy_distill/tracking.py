"""MLflow logging for the active run (the run ZenML's MLflow tracker opened).

Only plain values reach MLflow: paths, counts, hashes. Secrets are never passed
here; configs are logged after :func:`redacted` drops anything named like a key.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_SECRET_WORDS = ("key", "token", "secret", "password")


def redacted(tree: Any) -> Any:
    """A copy of a config tree without values whose key looks secret (``*_env`` names stay)."""
    if isinstance(tree, dict):
        return {
            k: ("<redacted>" if any(w in k.lower() for w in _SECRET_WORDS) and not k.lower().endswith("_env") else redacted(v))
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [redacted(v) for v in tree]
    return tree


def log_ingest(report: dict[str, Any], quarantine_jsonl: str, prefix: str = "ingest") -> None:
    """Logs an ingestion report: params, counts as metrics, report and quarantine as artifacts."""
    import mlflow

    if mlflow.active_run() is None:
        logger.warning("no active MLflow run; ingestion report not logged")
        return
    mlflow.log_params(
        {
            f"{prefix}.data_path": report["data_path"],
            f"{prefix}.format": report["format"],
            f"{prefix}.data_hash": report["data_hash"],
            f"{prefix}.split_method": report["split_method"],
        }
    )
    mlflow.set_tag("data_hash", report["data_hash"])
    metrics = {
        f"{prefix}.{key}": float(report[key])
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
    metrics.update({f"{prefix}.quarantine.{k}": float(v) for k, v in report["quarantine_reasons"].items()})
    mlflow.log_metrics(metrics)
    mlflow.log_dict(report, f"{prefix}/report.json")
    mlflow.log_text(quarantine_jsonl, f"{prefix}/quarantine.jsonl")


def log_config(config: dict[str, Any]) -> None:
    """Logs the fully resolved config once per run, secrets redacted."""
    import mlflow

    if mlflow.active_run() is None:
        return
    mlflow.log_dict(redacted(config), "config/resolved.json")
