"""Batched generation vs one prompt at a time: same prompts, same settings, same model.

    .venv/bin/python bench/generation.py [--prompts 60] [--batch-size 16] [--max-new-tokens 32]

The tiny student (built once from data/sample) with an SFT adapter answers the
sample's prompts greedily, first through ``generate`` with left-padded batches,
then with batch size 1. Both sides load nothing during the timing. Batching must not
change a reply: the greedy outputs of both sides are compared and the benchmark
fails if any differs. The last lines are

    identical_outputs=<equal replies>/<prompts>
    batched_speedup=<one-at-a-time time / batched time>
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import sample_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from peft import PeftModel

    from empathy_distill.config import GenerationSettings, StageSettings, TrainingConfig
    from empathy_distill.data.training_sets import user_turn
    from empathy_distill.prompts import load_template
    from empathy_distill.training.generate import generate
    from empathy_distill.training.sft import fit_sft
    from empathy_distill.training.student import load_student

    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    table, sets, student, base = sample_world(work / "students")
    sft = fit_sft(
        base,
        sets.sft,
        TrainingConfig(
            output_dir=str(work / "runs"), sft=StageSettings(learning_rate=1e-3, max_steps=20, batch_size=4)
        ),
        student,
    )
    tokenizer, model, _ = load_student(base, student)
    model = PeftModel.from_pretrained(model, sft.adapter_dir)
    system = load_template("student_system")
    contexts = (
        table.groupby("dialogue_id", sort=True)
        .agg(situation=("situation", "first"), utterance=("utterance", "first"))
        .head(args.prompts)
    )
    prompts = [
        [{"role": "system", "content": system}, {"role": "user", "content": user_turn(s, u)}]
        for s, u in zip(contexts.situation, contexts.utterance)
    ]
    # EOS is suppressed on both sides so each reply has exactly max_new_tokens tokens: equal work
    model.generation_config.min_new_tokens = args.max_new_tokens
    batched_cfg = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    single_cfg = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=1)
    generate(model, tokenizer, prompts[:2], batched_cfg)  # warm-up
    times: dict[str, list[float]] = {"batched": [], "single": []}
    outputs: dict[str, list[str]] = {}
    for _ in range(2):
        for name, cfg in (("batched", batched_cfg), ("single", single_cfg)):
            start = time.perf_counter()
            out = generate(model, tokenizer, prompts, cfg, desc=name)
            times[name].append(time.perf_counter() - start)
            assert len(out) == len(prompts)
            outputs[name] = out
    same = sum(a == b for a, b in zip(outputs["batched"], outputs["single"]))
    batched, single = min(times["batched"]), min(times["single"])
    tokens = len(prompts) * args.max_new_tokens
    print(
        f"{len(prompts)} prompts x {args.max_new_tokens} new tokens: batched (batch {args.batch_size}) {batched:.2f} "
        f"s = {tokens / batched:.0f} tok/s; "
        f"one at a time {single:.2f} s = {tokens / single:.0f} tok/s"
    )
    print(f"identical_outputs={same}/{len(prompts)}")
    if same != len(prompts):
        raise SystemExit("batched generation changed a reply: the speed-up does not count")
    print(f"batched_speedup={single / batched:.2f}")


if __name__ == "__main__":
    main()
