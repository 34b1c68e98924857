"""Ingestion end to end: read any format, validate, split, hash, report.

Two halves so that a pipeline can run them as separate steps:
:func:`read_dialogues` (format detection and parsing) and
:func:`validate_dialogues` (Great Expectations, quarantine, split, hash).
:func:`ingest` runs both; :func:`write_outputs` writes the three files of
``empathy-distill ingest``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from empathy_distill.config import DataConfig, ValidationConfig
from empathy_distill.data.hashing import data_hash
from empathy_distill.data.readers import READERS, ReadResult, detect_format
from empathy_distill.data.reports import IngestReport
from empathy_distill.data.schema import BOOKKEEPING_COLUMNS, DIALOGUE_COLUMNS
from empathy_distill.data.splits import assign_splits
from empathy_distill.errors import InputError
from empathy_distill.validation import validate_raw

logger = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ["record", "dialogue_id", "source", "field", "reason", "detail"]
_RAW_COLUMNS = [c for c in DIALOGUE_COLUMNS if c != "rating"] + BOOKKEEPING_COLUMNS


@dataclass
class IngestResult:
    """The normalized table, the quarantine and the report of one ingestion."""

    table: pd.DataFrame
    quarantine: pd.DataFrame
    report: IngestReport


def _quarantine_frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(entries, columns=QUARANTINE_COLUMNS)
    return frame.astype({c: ("Int64" if c == "record" else "string") for c in QUARANTINE_COLUMNS})


def read_dialogues(path: str | Path, fmt: str = "auto") -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Parses ``path`` into unvalidated long rows.

    Args:
        path: a CSV or JSONL file, or a ``save_to_disk`` folder.
        fmt: one of the formats in :data:`~empathy_distill.data.schema.FORMATS`, or ``auto``.

    Returns:
        (rows, rejected records, read info with ``format`` and ``records_read``).

    Raises:
        InputError: the file cannot be used at all.
    """
    path = Path(path)
    if fmt == "auto":
        fmt = detect_format(path)
    elif fmt not in READERS:
        raise InputError(path, f"unknown format '{fmt}'; choose one of {', '.join(READERS)} or auto")
    elif not path.exists():
        raise InputError(path, "file not found")
    result: ReadResult = READERS[fmt](path)
    # object dtype: texts stay exactly as read until validation
    rows = pd.DataFrame(result.rows, columns=_RAW_COLUMNS, dtype=object)
    rejected = _quarantine_frame(result.quarantine)
    info = {"data_path": str(path), "format": fmt, "records_read": result.records_read}
    logger.info(
        "read %s as %s: %d records, %d rows, %d rejected", path, fmt, result.records_read, len(rows), len(rejected)
    )
    return rows, rejected, info


def validate_dialogues(
    rows: pd.DataFrame, rejected: pd.DataFrame, info: dict[str, Any], data: DataConfig, validation: ValidationConfig
) -> IngestResult:
    """Validates, splits and hashes rows from :func:`read_dialogues`.

    Never raises for bad rows: they are quarantined. See :func:`require_rows`.
    """
    outcome = validate_raw(rows, max_text_chars=validation.max_text_chars)
    quarantine = pd.concat([rejected, _quarantine_frame(outcome.quarantined)], ignore_index=True)
    kept = outcome.kept
    table = pd.DataFrame(
        {
            "dialogue_id": kept["dialogue_id"].astype("string"),
            "emotion": kept["emotion"].astype("string"),
            "situation": kept["situation"].astype("string"),
            "utterance": kept["utterance"].astype("string"),
            "source": kept["source"].astype("string"),
            "response": kept["response"].astype("string"),
            "rating": pd.to_numeric(kept["rating_raw"], errors="raise").round().astype("Int64"),
            "split": kept["split"].astype("string"),
        }
    ).reset_index(drop=True)
    split, split_method = assign_splits(table, data.split.method, data.split.test_fraction, data.split.seed)
    table["split"] = split.to_numpy()
    rows_in = len(rows) + len(rejected)
    reasons = Counter(quarantine["reason"].tolist())
    dialogues = table.groupby("split")["dialogue_id"].nunique()
    report = IngestReport(
        **info,
        dialogues_read=int(pd.concat([rows["dialogue_id"], rejected["dialogue_id"]]).dropna().nunique()),
        responses_read=rows_in,
        rows_kept=len(table),
        rows_quarantined=len(quarantine),
        quarantine_reasons=dict(sorted(reasons.items())),
        dialogues_kept=int(table["dialogue_id"].nunique()),
        train_dialogues=int(dialogues.get("train", 0)),
        test_dialogues=int(dialogues.get("test", 0)),
        split_method=split_method,
        sources={k: int(v) for k, v in table["source"].value_counts().sort_index().items()},
        emotions=int(table["emotion"].nunique()),
        rated_rows=int(table["rating"].notna().sum()),
        data_hash=data_hash(table),
    )
    assert report.rows_kept + report.rows_quarantined == rows_in, "row accounting broken"
    return IngestResult(table=table, quarantine=quarantine, report=report)


def require_rows(result: IngestResult) -> None:
    """Raises a one-line :class:`InputError` when nothing was kept.

    Callers write the quarantine and report first, so the reasons are on disk.
    """
    report = result.report
    if report.rows_kept == 0:
        reasons = Counter(report.quarantine_reasons)
        top = ", ".join(f"{k}={v}" for k, v in reasons.most_common(3)) or "the file has no data rows"
        raise InputError(
            report.data_path,
            f"no rows kept ({report.responses_read} read, {report.rows_quarantined} quarantined: {top})",
        )


def ingest(path: str | Path, data: DataConfig, validation: ValidationConfig) -> IngestResult:
    """Reads, validates, splits and hashes one input (``data.format`` may be ``auto``)."""
    rows, rejected, info = read_dialogues(path, data.format)
    return validate_dialogues(rows, rejected, info, data, validation)


def quarantine_jsonl(quarantine: pd.DataFrame) -> str:
    """Quarantine entries as JSON lines (ASCII-escaped so odd bytes survive)."""
    lines = []
    for rec in quarantine.to_dict(orient="records"):
        lines.append(
            json.dumps({k: (None if pd.isna(v) else v) for k, v in rec.items()}, ensure_ascii=True, default=int)
        )
    return "\n".join(lines) + ("\n" if lines else "")


def write_outputs(result: IngestResult, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``dialogues.parquet``, ``quarantine.jsonl`` and ``report.json`` to ``out_dir``.

    Each file is written beside its final name and renamed into place, the report last: a reader
    never sees a half-written file, and a report only once the other two are complete.
    """
    import os

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "dialogues": out / "dialogues.parquet",
        "quarantine": out / "quarantine.jsonl",
        "report": out / "report.json",
    }
    staged = {name: path.with_name(f".{path.name}.partial") for name, path in paths.items()}
    result.table.to_parquet(staged["dialogues"], index=False)
    staged["quarantine"].write_text(quarantine_jsonl(result.quarantine), encoding="utf-8")
    staged["report"].write_text(json.dumps(result.report.as_json(), indent=2) + "\n", encoding="utf-8")
    for name in ("dialogues", "quarantine", "report"):
        os.replace(staged[name], paths[name])
    return paths
