"""The ablation grid in one run: methods x strategies, each SFT-only and SFT+DPO.

    empathy-distill ablation --config configs/ablation.yaml

Shared work is done once: ingestion and validation for all cells, the bootstrap
and SFT per (method, strategy) for both stage variants, the student for all. The
teacher's reply cache and the training stages' input-keyed folders make reruns
reuse everything whose inputs did not change, and ZenML's step cache does the same
across runs.
"""

from zenml import pipeline

from empathy_distill.config import DistillConfig
from empathy_distill.judging.ablation import cell_label, cells
from steps import (
    bootstrap_responses,
    build_training_sets,
    evaluate_responses,
    generate_responses,
    ingest_dialogues,
    prepare_student,
    summarize_ablation,
    train_dpo,
    train_sft,
    validate_dialogues,
    validate_training_sets,
)


@pipeline(enable_cache=True)
def ablation(config: DistillConfig, source_fingerprint: str, prompt_hashes: dict) -> None:
    """Steps, in order:

    1. ``ingest_dialogues``, ``validate_dialogues``: once for the grid.
    2. per (method, strategy): ``bootstrap_responses``, ``build_training_sets``, ``validate_training_sets``,
    ``train_sft``.
    3. ``prepare_student`` once (its warm-up excludes every response and the first cell's targets; it reads train
    situations and speaker turns only).
    4. per cell (stages sft or sft+dpo): ``train_dpo`` (sft+dpo only), ``generate_responses``, ``evaluate_responses``.
    5. ``summarize_ablation``: the comparison table and plot.
    """
    grid = config.ablation
    raw_rows, rejected, info = ingest_dialogues(data=config.data, source_fingerprint=source_fingerprint)
    dialogues, _, _ = validate_dialogues(raw_rows, rejected, info, data=config.data, validation=config.validation)
    base = None
    for method, strategy in cells(grid.methods, grid.strategies):
        key = f"{method}__{strategy}"
        cfg = config.bootstrap.model_copy(
            update={"method": method} | ({"strategy": strategy} if strategy != "none" else {})
        )
        log, report = bootstrap_responses(
            dialogues, bootstrap=cfg, teacher=config.teacher, prompt_hash=prompt_hashes[key], id=f"bootstrap_{key}"
        )
        sft_rows, dpo_pairs = build_training_sets(dialogues, log, report, bootstrap=cfg, id=f"build_{key}")
        sft_train, dpo_train, _, _ = validate_training_sets(
            dialogues, sft_rows, dpo_pairs, bootstrap=cfg, validation=config.validation, id=f"validate_sets_{key}"
        )
        if base is None:
            base = prepare_student(dialogues, sft_train, dpo_train, student=config.student)
        sft = train_sft(base, sft_train, training=config.training, student=config.student, id=f"sft_{key}")
        for stages in grid.stages:
            label = cell_label(method, strategy, stages)
            adapter = (
                sft
                if stages == "sft"
                else train_dpo(
                    base, dpo_train, training=config.training, student=config.student, sft_adapter=sft, id=f"dpo_{key}"
                )
            )
            generations = generate_responses(
                base,
                dialogues,
                generation=config.generation,
                student=config.student,
                adapter=adapter,
                id=f"generate_{label}",
            )
            evaluate_responses(
                generations, dialogues, evaluation=config.evaluation, label=label, id=f"evaluate_{label}"
            )
    summarize_ablation(
        after=[
            f"evaluate_{cell_label(m, s, st)}" for m, s in cells(grid.methods, grid.strategies) for st in grid.stages
        ]
    )
