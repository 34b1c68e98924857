"""The bootstrap without ZenML: the same library calls as the pipeline, results as files.

    empathy-distill bootstrap --config configs/paper.yaml --out outputs/bootstrap

For air-gapped or one-off jobs, and for the kill-and-resume test: every teacher
reply is in the reply cache the moment it arrives, so a rerun after a crash
sends only what had not completed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from empathy_distill.config import DistillConfig
from empathy_distill.data.ingest import ingest, quarantine_jsonl, require_rows
from empathy_distill.datasets import build_training_sets
from empathy_distill.teacher import build_teacher
from empathy_distill.teacher.types import TeacherError
from empathy_distill.validation import validate_training_set

logger = logging.getLogger(__name__)


def bootstrap_to_folder(config: DistillConfig, out_dir: str | Path, use_cache: bool = True) -> dict[str, Any]:
    """Ingests, bootstraps, validates; writes ``sft.parquet``, ``dpo.parquet``,
    ``bootstrap_log.parquet``, ``quarantine.jsonl`` and ``report.json``.

    Raises:
        InputError: unusable data.
        TeacherError: more failed dialogues than ``teacher.max_failed_fraction``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = ingest(config.data.path, config.data, config.validation)
    require_rows(data)
    teacher = None if config.bootstrap.method == "direct" else build_teacher(config.teacher, use_cache=use_cache)
    sets = build_training_sets(data.table, config.bootstrap, teacher)
    test_ids = set(data.table.loc[data.table["split"] == "test", "dialogue_id"])
    sft = validate_training_set(sets.sft, "sft", test_ids, config.bootstrap.max_words, config.validation.max_text_chars)
    dpo = validate_training_set(sets.dpo, "dpo", test_ids, config.bootstrap.max_words, config.validation.max_text_chars)
    quarantine = pd.DataFrame(sft.quarantined + dpo.quarantined, columns=["set", "dialogue_id", "field", "reason", "detail"])
    sft.kept.to_parquet(out / "sft.parquet", index=False)
    dpo.kept.to_parquet(out / "dpo.parquet", index=False)
    sets.log.to_parquet(out / "bootstrap_log.parquet", index=False)
    (out / "quarantine.jsonl").write_text(quarantine_jsonl(quarantine), encoding="utf-8")
    report = {
        "data_hash": data.report["data_hash"],
        **{k: v for k, v in sets.report.items() if k != "teacher_usage"},
        "teacher_usage": sets.report.get("teacher_usage"),
        "sft_rows": len(sft.kept),
        "dpo_pairs": len(dpo.kept),
        "rows_quarantined": len(quarantine),
        "quarantine_reasons": dict(sft.reasons + dpo.reasons),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    planned = report.get("sft_dialogues_planned", 0) + report.get("dpo_dialogues_planned", 0)
    if planned and report.get("dialogues_error", 0) / planned > config.teacher.max_failed_fraction:
        raise TeacherError(f"{report['dialogues_error']} of {planned} dialogues failed at the teacher; first error: {report.get('first_error')}")
    return report
