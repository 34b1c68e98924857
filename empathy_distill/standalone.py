"""The data stages without ZenML: the same core functions as the pipeline's steps, results as files.

    empathy-distill bootstrap --config configs/paper.yaml --out outputs/sets

For air-gapped or one-off jobs, and for the kill-and-resume test: every teacher
reply is in the reply cache the moment it arrives, so a rerun after a crash
sends only what had not completed.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from empathy_distill.config import DistillConfig
from empathy_distill.data.ingest import ingest, quarantine_jsonl, require_rows
from empathy_distill.stages import require_teacher_success, rewrite_stage, training_sets_stage, validate_sets_stage
from empathy_distill.teacher import build_teacher
from empathy_distill.teacher.check import run_check

logger = logging.getLogger(__name__)


def sets_to_folder(config: DistillConfig, out_dir: str | Path, use_cache: bool = True) -> dict[str, Any]:
    """Ingests, bootstraps, builds and validates the sets; writes ``sft.parquet``, ``dpo.parquet``,
    ``bootstrap_log.parquet``, ``quarantine.jsonl`` and ``report.json``.

    Raises:
        InputError: unusable data.
        TeacherError: more failed dialogues than ``teacher.max_failed_fraction``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = ingest(config.data.path, config.data, config.validation)
    require_rows(data)
    if config.teacher.check and config.bootstrap.method != "direct":
        check, verdict = run_check(data.table, config.bootstrap, config.teacher, config.evaluation)
        (out / "teacher_check.json").write_text(check.model_dump_json(indent=2) + "\n", encoding="utf-8")
        print(verdict.line, file=sys.stderr, flush=True)
        verdict.raise_unless_passed()
    teacher = None if config.bootstrap.method == "direct" else build_teacher(config.teacher, use_cache=use_cache)
    # the plan goes to stderr: stdout is this path's JSON result
    log, rewrite_report = rewrite_stage(
        data.table, config.bootstrap, teacher, lambda plan: print(plan.line(), file=sys.stderr, flush=True)
    )
    sft_rows, dpo_pairs = training_sets_stage(data.table, log, config.bootstrap)
    sft, dpo, quarantine, sets_report = validate_sets_stage(
        data.table, sft_rows, dpo_pairs, config.bootstrap, config.validation
    )
    sft.to_parquet(out / "sft.parquet", index=False)
    dpo.to_parquet(out / "dpo.parquet", index=False)
    log.to_parquet(out / "bootstrap_log.parquet", index=False)
    (out / "quarantine.jsonl").write_text(quarantine_jsonl(quarantine), encoding="utf-8")
    report = {"data_hash": data.report.data_hash, **rewrite_report.as_json(), **sets_report.as_json()}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    require_teacher_success(rewrite_report, config.teacher)
    return report
