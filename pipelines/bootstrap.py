"""The bootstrap pipeline: dialogues in, validated SFT rows and DPO pairs out.

empathy-distill bootstrap --config configs/paper.yaml --set teacher.base_url=http://127.0.0.1:8000/v1
"""

from zenml import pipeline

from empathy_distill.config import BootstrapConfig, DataConfig, EvaluationConfig, TeacherConfig, ValidationConfig
from steps import (
    bootstrap_responses,
    build_training_sets,
    check_teacher,
    ingest_dialogues,
    validate_dialogues,
    validate_training_sets,
)


def training_data_steps(data, validation, bootstrap, teacher, source_fingerprint, prompt_hash, evaluation=None):
    """Wires the data and bootstrap steps; shared by the ``bootstrap`` and ``distill`` pipelines. With
    ``teacher.check`` (and a teacher method), ``check_teacher`` runs first and the bootstrap only after it passed.

    Returns the dialogues, the two training sets and the three reports (for lineage).
    """
    raw_rows, rejected_records, read_info = ingest_dialogues(data=data, source_fingerprint=source_fingerprint)
    dialogues, _, ingest_report = validate_dialogues(
        raw_rows, rejected_records, read_info, data=data, validation=validation
    )
    after = None
    if teacher.check and bootstrap.method != "direct":
        check_teacher(
            dialogues,
            bootstrap=bootstrap,
            teacher=teacher,
            evaluation=evaluation or EvaluationConfig(),
            prompt_hash=prompt_hash,
            id="check_teacher",
        )
        after = "check_teacher"
    bootstrap_log, bootstrap_report = bootstrap_responses(
        dialogues, bootstrap=bootstrap, teacher=teacher, prompt_hash=prompt_hash, after=after
    )
    sft_rows, dpo_pairs = build_training_sets(dialogues, bootstrap_log, bootstrap_report, bootstrap=bootstrap)
    sft_train, dpo_train, _, training_report = validate_training_sets(
        dialogues, sft_rows, dpo_pairs, bootstrap=bootstrap, validation=validation, data_path=data.path
    )
    return dialogues, sft_train, dpo_train, (ingest_report, bootstrap_report, training_report)


@pipeline(enable_cache=True)
def bootstrap(
    data: DataConfig,
    validation: ValidationConfig,
    bootstrap: BootstrapConfig,
    teacher: TeacherConfig,
    source_fingerprint: str,
    prompt_hash: str,
    evaluation: EvaluationConfig | None = None,
) -> None:
    """Steps, in order:

    1. ``ingest_dialogues``: parse the input into long rows.
    2. ``validate_dialogues``: GX suite, quarantine, split, data hash.
    3. ``check_teacher`` (with ``teacher.check``): a sample's rewrites judged against their originals; stops the run
    unless they win beyond doubt (``evaluation`` names the offline judges).
    4. ``bootstrap_responses``: the teacher rewrites (improvement methods).
    5. ``build_training_sets``: SFT rows and DPO pairs.
    6. ``validate_training_sets``: GX suite over both sets, quarantine, leakage check.
    """
    training_data_steps(data, validation, bootstrap, teacher, source_fingerprint, prompt_hash, evaluation)
