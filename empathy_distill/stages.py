"""One core function per pipeline stage, without ZenML.

The ZenML steps call these and add what belongs to a run (MLflow logging, step metadata,
materializers); the no-ZenML path (:mod:`empathy_distill.standalone`), the benchmarks and
the tests call the same functions, so a stage is written once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from empathy_distill.config import BootstrapConfig, GenerationSettings, StudentConfig, TeacherConfig, ValidationConfig
from empathy_distill.data.hashing import table_digest
from empathy_distill.data.reports import BootstrapReport, TrainingSetReport
from empathy_distill.data.training_sets import REWRITE_LOG_COLUMNS, sets_for_method
from empathy_distill.prompts import method_prompt_hash
from empathy_distill.teacher.rewrite import rewrite_with_teacher
from empathy_distill.teacher.types import TeacherError
from empathy_distill.training.generate import champion_replies, generate_base_and_tuned, prompts_for_test_split
from empathy_distill.training.sources import resolve_student
from empathy_distill.training.student import prepare_tiny_student
from empathy_distill.validation import validate_training_set

QUARANTINE_COLUMNS = ["set", "dialogue_id", "field", "reason", "detail"]


def rewrite_stage(
    dialogues: pd.DataFrame, bootstrap: BootstrapConfig, teacher=None, announce=None, prompts=None
) -> tuple[pd.DataFrame, BootstrapReport]:
    """The teacher's rewrites for the improvement methods (an empty log for ``direct``) and the report.

    Args:
        dialogues: the validated dialogue table.
        bootstrap: method, strategy and set sizes.
        teacher: a client from :func:`empathy_distill.teacher.build_teacher`; None for ``direct``.
        announce: gets the teacher's cost :class:`~empathy_distill.teacher.estimate.Plan` before its first request.
        prompts: template -> prompt-registry URI, named on each stage's trace.
    """
    if bootstrap.method == "direct":
        log = pd.DataFrame(columns=REWRITE_LOG_COLUMNS).astype("string")
        report = BootstrapReport(method="direct", strategy="none")
    else:
        if teacher is None:
            raise ValueError(f"method {bootstrap.method} needs a teacher")

        log, report = rewrite_with_teacher(dialogues, bootstrap, teacher, announce, prompts)
    report.prompt_hash = method_prompt_hash(bootstrap.method, bootstrap.strategy)
    return log, report


def require_teacher_success(report: BootstrapReport, teacher: TeacherConfig) -> None:
    """Raises :class:`TeacherError` when more dialogues failed at the teacher than ``teacher.max_failed_fraction``."""
    planned, failed = report.planned, report.dialogues_error or 0
    if planned and failed / planned > teacher.max_failed_fraction:
        raise TeacherError(
            f"{failed} of {planned} dialogues failed at the teacher "
            f"(more than teacher.max_failed_fraction={teacher.max_failed_fraction}); first error: "
            f"{report.first_error}"
        )


def training_sets_stage(
    dialogues: pd.DataFrame, log: pd.DataFrame, bootstrap: BootstrapConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SFT rows and DPO pairs for the configured method."""
    return sets_for_method(dialogues, log, bootstrap)


def validate_sets_stage(
    dialogues: pd.DataFrame,
    sft_rows: pd.DataFrame,
    dpo_pairs: pd.DataFrame,
    bootstrap: BootstrapConfig,
    validation: ValidationConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, TrainingSetReport]:
    """Great Expectations over both sets: non-empty, not over-long, chosen != rejected, no duplicates, no
    test-split leakage. Returns the kept SFT rows, the kept DPO pairs, the quarantine and the report."""

    test_ids = set(dialogues.loc[dialogues["split"] == "test", "dialogue_id"])
    sft = validate_training_set(sft_rows, "sft", test_ids, bootstrap.max_words, validation.max_text_chars)
    dpo = validate_training_set(dpo_pairs, "dpo", test_ids, bootstrap.max_words, validation.max_text_chars)
    quarantine = pd.DataFrame(sft.quarantined + dpo.quarantined, columns=QUARANTINE_COLUMNS).astype("string")
    reasons: Counter = sft.reasons + dpo.reasons
    report = TrainingSetReport(
        sft_rows_in=len(sft_rows),
        sft_rows=len(sft.kept),
        dpo_pairs_in=len(dpo_pairs),
        dpo_pairs=len(dpo.kept),
        rows_quarantined=len(quarantine),
        quarantine_reasons=dict(reasons),
        test_leakage=int(reasons.get("test_leakage", 0)),
        sft_train_hash=table_digest(sft.kept),
        dpo_train_hash=table_digest(dpo.kept),
    )
    return sft.kept, dpo.kept, quarantine, report


def student_stage(
    dialogues: pd.DataFrame, training_sets: list[pd.DataFrame], student: StudentConfig
) -> tuple[str, dict[str, Any]]:
    """The student's base model: a configured folder or hub id as is, a packaged or given GGUF file dequantised
    (cached by its sha256), or the offline tiny student, built (warmed up on train situations and speaker turns
    only, never on a training target) and cached."""
    if student.model != "tiny":
        return resolve_student(student.model, student.cache_dir)

    folder, info = prepare_tiny_student(dialogues, training_sets, student)
    return str(Path(folder).resolve()), info


@dataclass(frozen=True)
class Generations:
    """The test prompts answered: one row per dialogue (prompt, base, tuned and champion replies, the recorded
    responses), and the counts the summary says."""

    table: pd.DataFrame
    tuned_empty: int
    tuned_no_end_of_turn: int
    base_no_end_of_turn: int
    with_champion: bool

    def metrics(self) -> dict[str, float]:
        return {
            "generation.prompts": float(len(self.table)),
            "generation.tuned_empty": float(self.tuned_empty),
            "generation.tuned_no_end_of_turn": float(self.tuned_no_end_of_turn),
            "generation.base_no_end_of_turn": float(self.base_no_end_of_turn),
        }

    def summary(self) -> str:
        who = "base, tuned and champion" if self.with_champion else "base and tuned"
        return (
            f"{len(self.table)} test prompts answered by {who}; tuned: {self.tuned_empty} empty, "
            f"{self.tuned_no_end_of_turn} ran to max_new_tokens; base: {self.base_no_end_of_turn} ran to max_new_tokens"
        )


def generation_stage(
    dialogues: pd.DataFrame,
    student_base: str,
    adapter_path: str | None,
    student: StudentConfig,
    generation: GenerationSettings,
    champion_uri: str | None = None,
) -> Generations:
    """Base and tuned students answer the test prompts; the champion (``models:/NAME/VERSION``, loaded as it is
    served) answers the same prompts with the same settings; the recorded responses ride along."""
    prompts = prompts_for_test_split(dialogues, generation.max_prompts)
    out = generate_base_and_tuned(student_base, adapter_path, prompts, student, generation)
    if champion_uri:
        served = champion_replies(champion_uri, prompts, generation)
        out["champion_response"] = served["response"].astype(str).to_numpy()
        out["champion_finished"] = (served["finish_reason"] == "stop").map({True: "true", False: "false"}).to_numpy()
        out["champion_version"] = champion_uri.rsplit("/", 1)[-1]
    recorded = dialogues[dialogues["split"] == "test"].pivot_table(
        index="dialogue_id", columns="source", values="response", aggfunc="first"
    )
    recorded.columns = [f"ref_{c}" for c in recorded.columns]
    table = (
        prompts.merge(out, on="dialogue_id")
        .merge(recorded, left_on="dialogue_id", right_index=True, how="left")
        .astype("string")
    )
    return Generations(
        table=table,
        tuned_empty=int((table["tuned_response"].str.strip() == "").sum()),
        tuned_no_end_of_turn=int((table["tuned_finished"] == "false").sum()),
        base_no_end_of_turn=int((table["base_finished"] == "false").sum()),
        with_champion=bool(champion_uri),
    )


def student_summary(model: str, info: dict[str, Any]) -> str:
    """The one line the student stage ends with: what the base is, where it came from, how it was built."""
    if info.get("source") == "gguf":
        g = info["gguf"]
        origin = f"{g['package']}=={g['package_version']} " if g.get("package") else ""
        # the run's preflight check usually builds the folder before the pipeline starts: say when it was built
        built = f"dequantised once in {info.get('build_seconds', 0):.0f} s" + (
            ", the cache reused" if info.get("reused") else ""
        )
        return (
            f"student {model}: {info.get('architecture')}, {info.get('parameters', 0) / 1e6:.1f}M parameters, "
            f"from {origin}{g['file']} sha256 {g['sha256'][:12]} ({built})"
        )
    if model != "tiny":
        return f"student {model}"
    built = (
        "reused" if info.get("reused") else f"built, pretrain loss {info.get('pretrain_loss_last', float('nan')):.2f}"
    )
    return f"tiny student ({info.get('parameters', 0) / 1e6:.2f}M parameters, vocab {info.get('vocab_size')}) {built}"


@dataclass
class TrainingSets:
    """Both training sets (unvalidated) with the rewrite log, the bootstrap report and the sets' counts, for callers
    that want the first stages in one call."""

    sft: pd.DataFrame
    dpo: pd.DataFrame
    log: pd.DataFrame
    report: BootstrapReport
    test_leakage: int = 0
    """Dialogues of the test split found in either set."""

    @property
    def sft_rows(self) -> int:
        return len(self.sft)

    @property
    def dpo_pairs(self) -> int:
        return len(self.dpo)


def bootstrap_training_sets(dialogues: pd.DataFrame, bootstrap: BootstrapConfig, teacher=None) -> TrainingSets:
    """:func:`rewrite_stage` then :func:`training_sets_stage`, unvalidated (tests and benchmarks)."""
    log, report = rewrite_stage(dialogues, bootstrap, teacher)
    sft, dpo = training_sets_stage(dialogues, log, bootstrap)
    test_ids = set(dialogues.loc[dialogues["split"] == "test", "dialogue_id"])
    leaked = (set(sft["dialogue_id"]) | set(dpo["dialogue_id"])) & test_ids
    return TrainingSets(sft, dpo, log, report, test_leakage=len(leaked))
