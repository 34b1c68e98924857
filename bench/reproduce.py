"""The paper's table in miniature, offline, on the real file: does distillation show a gain here?

    .venv/bin/python bench/reproduce.py --config configs/real-smollm2.yaml     # or: make reproduce
    .venv/bin/python bench/reproduce.py --config configs/real-offline.yaml     # the tiny student's table
    .venv/bin/python bench/reproduce.py --dev 100 --set training.sft.max_steps=120 --out outputs/dev/try1
                                               # a try of settings on 100 held-out train dialogues, never on test

The same core functions as the pipeline's steps (ingestion, the `direct` sets with their GX
validation, the student (SmolLM2-135M-Instruct from its GGUF, or the tiny one built from train
dialogues only), LoRA SFT, then DPO from the SFT adapter, generation, pairwise judging in both
orders), on all 250 test dialogues. It prints, by the
scorer and by the reference judge (nothing fitted: similarity to each dialogue's own top- minus
low-rated recorded replies), with 95% Wilson intervals:

    SFT+DPO vs base, SFT-only vs base, SFT+DPO vs SFT-only

beside the length-controlled win rate and the degenerate replies of each side, then whether the
production gate (``ci_low > 0.5`` vs base by every judge, degenerate within the limit) would
promote the SFT+DPO student. Nothing here reads the test split's ratings except the reference
judge, which is the point of it; nothing is tuned on the test split. Results go to
``outputs/reproduce/`` (report JSON, the table, generations).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "real-smollm2.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "reproduce"))
    parser.add_argument(
        "--dev",
        type=int,
        default=0,
        metavar="N",
        help="choose settings here: drop the test split, hold out N train dialogues as the evaluation set",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    import pandas as pd

    from empathy_distill.config import load_config
    from empathy_distill.data.ingest import ingest, require_rows
    from empathy_distill.errors import ConfigError, InputError
    from empathy_distill.judging.judges import build_judges
    from empathy_distill.judging.protocol import evaluate, evaluation_frame
    from empathy_distill.judging.report import degenerate_cell
    from empathy_distill.registry.policy import gate
    from empathy_distill.stages import student_stage, training_sets_stage, validate_sets_stage
    from empathy_distill.training.generate import generate_base_and_tuned, prompts_for_test_split

    start = time.perf_counter()
    try:
        config = load_config(args.config, args.overrides)
        data = ingest(config.data.path, config.data, config.validation)
        require_rows(data)
    except (ConfigError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = data.table
    if args.dev:  # nothing of the test split is read: a held-out slice of train stands in for it
        from empathy_distill.data.splits import dev_split

        table = dev_split(table, args.dev, seed=config.data.split.seed)
        print(f"dev split: the test split dropped; {args.dev} train dialogues held out as the evaluation set")
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        timings[name] = round(time.perf_counter() - since, 1)
        print(f"{name}: {timings[name]:.1f} s", flush=True)
        return time.perf_counter()

    t = time.perf_counter()
    sft_rows, dpo_pairs = training_sets_stage(table, pd.DataFrame(), config.bootstrap)
    sft, dpo, quarantine, sets_report = validate_sets_stage(
        table, sft_rows, dpo_pairs, config.bootstrap, config.validation
    )
    n_test = table.loc[table["split"] == "test", "dialogue_id"].nunique()
    print(
        f"data: {table['dialogue_id'].nunique()} dialogues ({n_test} {'dev' if args.dev else 'test'}), {len(sft)} SFT "
        f"rows, {len(dpo)} DPO "
        f"pairs, {len(quarantine)} quarantined, test leakage {sets_report.test_leakage}"
    )
    t = lap("data", t)
    base, info = student_stage(table, [sft, dpo], config.student)
    if config.student.model == "tiny":
        print(
            f"student: tiny, {info.get('parameters', 0) / 1e6:.2f}M parameters, vocab {info.get('vocab_size')}, "
            f"warm-up loss {info.get('pretrain_loss_last', float('nan')):.2f} "
            f"({'reused' if info.get('reused') else 'built'})"
        )
    else:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):  # the shape only: nothing is allocated
            shape = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
        origin = info.get("gguf") or {}
        print(
            f"student: {config.student.model}, {type(shape).__name__}, "
            f"{sum(p.numel() for p in shape.parameters()) / 1e6:.1f}M parameters"
            + (
                f", from {origin.get('package')} {origin.get('file')} sha256 {origin.get('sha256', '')[:12]}"
                if origin
                else ""
            )
        )
    t = lap("student", t)

    from empathy_distill.training.dpo import fit_dpo
    from empathy_distill.training.sft import fit_sft

    sft_result = fit_sft(base, sft, config.training, config.student)
    print(f"SFT: {sft_result.global_step} steps, last loss {last(sft_result.history, 'loss')}")
    t = lap("sft", t)
    dpo_result = fit_dpo(base, dpo, config.training, config.student, sft_result.adapter_dir)
    print(
        f"DPO: {dpo_result.global_step} steps, last loss {last(dpo_result.history, 'loss')}, reward accuracy on "
        f"training pairs {dpo_result.eval_metrics.get('rewards/accuracies', float('nan')):.2f}"
    )
    t = lap("dpo", t)

    prompts = prompts_for_test_split(table, config.generation.max_prompts)
    generations = generate_base_and_tuned(
        base, dpo_result.adapter_dir, prompts, config.student, config.generation, {"sft": sft_result.adapter_dir}
    )
    frame = evaluation_frame(prompts.merge(generations, on="dialogue_id"), table)
    frame.to_csv(out / "generations.csv", index=False)
    t = lap("generation", t)

    ev = config.evaluation
    judges = build_judges(ev, table)
    comparisons = [
        ("SFT+DPO", "tuned_response", "base", "base_response"),
        ("SFT-only", "sft_response", "base", "base_response"),
        ("SFT+DPO", "tuned_response", "SFT-only", "sft_response"),
    ]
    reports = []
    for label, candidate, opponent, column in comparisons:
        report = evaluate(
            frame,
            judges,
            {opponent: column},
            candidate=candidate,
            max_invalid_fraction=ev.max_invalid_fraction,
            max_degenerate_fraction=ev.max_degenerate_fraction,
        )
        reports.append((label, opponent, report))
    t = lap("judging", t)

    lines = [
        "| candidate | opponent | judge | win rate [95% CI] | W/T/L | LC win rate | degenerate (candidate / "
        "opponent) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, opponent, report in reports:
        for c in report.comparisons:
            lines.append(
                f"| {label} | {opponent} | {c.judge} | {c.win_rate:.3f} "
                f"[{c.ci_low:.3f}, {c.ci_high:.3f}] | {c.wins}/{c.ties}/{c.losses} | "
                f"{c.length_controlled_win_rate:.3f} | {degenerate_cell(c)} |"
            )
    decision = gate(reports[0][2], config.registry.policy, champion_version=None)
    verdict = "PROMOTE" if decision.passed else "REFUSE: " + "; ".join(decision.reasons)
    total = time.perf_counter() - start
    lines += ["", f"production gate on SFT+DPO vs base: {verdict}", f"wall time {total / 60:.1f} min"]
    text = "\n".join(lines)
    print(text)
    (out / "table.md").write_text(text + "\n")
    (out / "report.json").write_text(
        json.dumps(
            {
                "reports": [
                    {**report.model_dump(), "candidate": label, "opponent": opponent}
                    for label, opponent, report in reports
                ],
                "gate": {"passed": decision.passed, "reasons": decision.reasons, **decision.figures()},
                "timings_s": timings,
                "student": info,
            },
            indent=2,
            default=str,
        )
    )
    return 0


def last(history: list[dict[str, float]], key: str) -> str:
    values = [h[key] for h in history if key in h]
    return f"{values[-1]:.3f}" if values else "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
