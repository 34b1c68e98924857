"""The end-to-end distillation pipeline: data, teacher, training sets, SFT, DPO, judging, registry, gate, serving.

empathy-distill distill --config configs/demo.yaml
"""

from zenml import pipeline

from empathy_distill.config import (
    BootstrapConfig,
    DataConfig,
    EvaluationConfig,
    GenerationSettings,
    RegistryConfig,
    StudentConfig,
    TeacherConfig,
    TrainingConfig,
    ValidationConfig,
)
from pipelines.bootstrap import training_data_steps
from steps import (
    deploy_model,
    evaluate_responses,
    generate_responses,
    prepare_student,
    promote_model,
    register_model,
    train_dpo,
    train_sft,
)


@pipeline(enable_cache=True)
def distill(
    data: DataConfig,
    validation: ValidationConfig,
    bootstrap: BootstrapConfig,
    teacher: TeacherConfig,
    student: StudentConfig,
    training: TrainingConfig,
    generation: GenerationSettings,
    evaluation: EvaluationConfig,
    registry: RegistryConfig,
    source_fingerprint: str,
    prompt_hash: str,
    inputs: dict[str, str],
    git_commit: str,
    champion_version: str | None = None,
) -> None:
    """Steps, in order:

    1. ``ingest_dialogues``: parse the input into long rows.
    2. ``validate_dialogues``: GX suite, quarantine, split, data hash; logged to MLflow.
    3. ``bootstrap_responses``: the teacher rewrites (improvement methods; none for ``direct``); with
    ``teacher.check``, ``check_teacher`` first (a sample judged against its originals; the run stops unless it wins).
    4. ``build_training_sets``: SFT rows and DPO pairs.
    5. ``validate_training_sets``: GX suite over both sets, quarantine, leakage check.
    6. ``prepare_student``: the base model (the offline tiny student is built here, untouched by any training target).
    7. ``train_sft``: LoRA SFT (skipped when ``training.stages`` is ``dpo``).
    8. ``train_dpo``: DPO from the SFT adapter (skipped when ``training.stages`` is ``sft``).
    9. ``generate_responses``: base, tuned and (while one exists) champion replies to the test prompts.
    10. ``evaluate_responses``: pairwise judging in both orders, win rates with Wilson intervals, validity, the report.
    11. ``register_model``: a new version of ``registry.model_name`` (alias challenger) with its lineage tags.
    12. ``promote_model``: the gate of ``registry.policy``; champion moves under lock with compare-and-set (never
    cached).
    13. ``deploy_model``: with ``registry.deploy.enabled``, the champion is served (a new one beside the old server,
    which is then stopped).
    """
    dialogues, sft_train, dpo_train, reports = training_data_steps(
        data, validation, bootstrap, teacher, source_fingerprint, prompt_hash, evaluation
    )
    base = prepare_student(dialogues, sft_train, dpo_train, student=student)
    adapter = None
    if training.stages in ("sft+dpo", "sft"):
        adapter = train_sft(base, sft_train, training=training, student=student)
    if training.stages in ("sft+dpo", "dpo"):
        adapter = train_dpo(base, dpo_train, training=training, student=student, sft_adapter=adapter)
    champion = (
        {"model": registry.model_name, "version": champion_version}
        if champion_version and "champion" in evaluation.opponents
        else None
    )
    generations = generate_responses(
        base, dialogues, generation=generation, student=student, adapter=adapter, champion=champion
    )
    report, _ = evaluate_responses(generations, dialogues, evaluation=evaluation)
    registration = register_model(
        adapter,
        base,
        report,
        *reports,
        registry=registry,
        student=student,
        generation=generation,
        training=training,
        teacher_model=None if bootstrap.method == "direct" else teacher.model,
        inputs=inputs,
        git_commit=git_commit,
    )
    decision = promote_model(registration, report, registry=registry, champion_version=champion_version)
    if registry.deploy.enabled:
        deploy_model(decision, registry=registry)
