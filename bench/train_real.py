"""Training and generation speed on a real pretrained student (SmolLM2-135M-Instruct unless told otherwise).

    .venv/bin/python bench/train_real.py [--student smollm2-135m-instruct] [--steps 12] [--batch 4] [--rounds 2]
                                         [--prompts 16] [--max-new-tokens 48] [--precision-steps 0]

1. The machine's matmul peak: a 2048x2048 float32 matmul (and bfloat16), best of 5, on all of torch's threads.
2. Padding: the SFT rows of data/sample tokenized as the pipeline tokenizes them, batched as the trainer draws
   them, random batches vs length-grouped ones (``training.sft.group_by_length``); the share of pad tokens.
3. SFT speed: the ``train_sft`` step inside a ZenML run (local stack, MLflow tracker, adapter materializer, the
   rows read back from an artifact) vs a plain TRL ``SFTTrainer`` script on the same tokenized rows with the same
   settings and sampler, so both train on the same batches. The sides alternate (plain, ours, ours, plain, ...).
   Trained tokens are the non-pad tokens the model read (TRL's count); achieved FLOP/s counts 4·N per trained
   token (LoRA: forward 2N, gradients through the activations 2N; N = the base's parameters), set against the peak
   in the precision trained in.
4. Precision: ``--precision-steps`` steps in float32 and in bfloat16 autocast on the same rows, both loss curves
   (skipped with its reason when the hardware has no native bfloat16 and the flag is 0).
5. Generation: the base answers ``--prompts`` test prompts greedily, batched and one at a time, every reply forced
   to ``--max-new-tokens`` (equal work); tokens/s and the replies compared, each difference shown.

The last line holds the figures as key=value.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

from _common import ROOT, sample_sets, throwaway_stack


def matmul_peak(dtype_name: str, n: int = 2048, reps: int = 5) -> float:
    """Best FLOP/s of an n x n matmul in that dtype."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def pad_share(lengths: list[int], batch: int, grouped: bool, seed: int = 0) -> float:
    """Share of pad tokens over one epoch, batches drawn as the trainer's sampler draws them."""
    import torch
    from torch.utils.data import RandomSampler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = torch.Generator().manual_seed(seed)
    if grouped:
        order = list(LengthGroupedSampler(batch, lengths=lengths, generator=generator))
    else:
        order = list(RandomSampler(range(len(lengths)), generator=generator))
    padded = real = 0
    for i in range(0, len(order), batch):
        chunk = [lengths[j] for j in order[i : i + batch]]
        padded += max(chunk) * len(chunk)
        real += sum(chunk)
    return 1 - real / padded


def plain_trl(folder: str, examples: list[dict], steps: int, batch: int, lr: float, out: Path, grouped: bool, bf16):
    """The few lines of TRL a user would write for LoRA SFT on pre-tokenized rows: (seconds, trained tokens,
    training-loop seconds, losses)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from empathy_distill.training.arguments import _checkpointing_key

    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(out),
            learning_rate=lr,
            per_device_train_batch_size=batch,
            max_steps=steps,
            max_length=256,
            logging_steps=1,
            save_steps=50,
            report_to="none",
            seed=0,
            bf16=bf16,
            use_cpu=not torch.cuda.is_available(),  # as the pipeline's trainer_args: bf16 on a CPU needs it
            completion_only_loss=True,
            train_sampling_strategy="group_by_length" if grouped else "random",
            include_num_input_tokens_seen="non_padding",
            disable_tqdm=True,
            **{_checkpointing_key(): False},  # TRL turns it on by default; the pipeline trains without
        ),
        train_dataset=Dataset.from_list(examples),
        processing_class=tok,
        peft_config=LoraConfig(
            task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear"
        ),
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # no log dict printed at every step
    result = trainer.train()
    trainer.model.save_pretrained(str(out / "adapter"))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return (
        time.perf_counter() - start,
        int(trainer.state.num_input_tokens_seen),
        result.metrics["train_runtime"],
        losses,
    )


def ours(folder: str, sets_dir: Path, student, steps: int, batch: int, lr: float, out: Path, grouped: bool) -> float:
    """The real ``train_sft`` step in a ZenML run (cache off), on the active local stack with its MLflow tracker."""
    from _training_pipeline import sft_step

    from empathy_distill.config import StageSettings, TrainingConfig

    training = TrainingConfig(
        output_dir=str(out),
        sft=StageSettings(learning_rate=lr, batch_size=batch, max_steps=steps),
        group_by_length=grouped,
    )
    start = time.perf_counter()
    sft_step.with_options(enable_cache=False)(base=folder, sets_dir=str(sets_dir), training=training, student=student)
    return time.perf_counter() - start


def generation(folder: str, student, table, prompts: int, max_new_tokens: int, batch: int) -> dict[str, float]:
    from empathy_distill.config import GenerationSettings
    from empathy_distill.training.generate import generate, prompts_for_test_split
    from empathy_distill.training.student import load_student

    tokenizer, model, fmt = load_student(folder, student)
    rows = prompts_for_test_split(table.assign(split="test"), limit=prompts)
    chats = [[{"role": "system", "content": s}, {"role": "user", "content": u}] for s, u in zip(rows.system, rows.user)]
    model.generation_config.min_new_tokens = max_new_tokens  # every reply exactly max_new_tokens: equal work
    sides = {"batched": batch, "single": 1}
    generate(model, tokenizer, chats[:2], GenerationSettings(max_new_tokens=4, batch_size=2), fmt=fmt, progress=False)
    times, replies = {}, {}
    for name, size in sides.items():
        cfg = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=size)
        start = time.perf_counter()
        replies[name] = [r.text for r in generate(model, tokenizer, chats, cfg, fmt=fmt, progress=False)]
        times[name] = time.perf_counter() - start
    tokens = len(chats) * max_new_tokens
    print(
        f"generation, {len(chats)} prompts x {max_new_tokens} new tokens (greedy, float32): batched (batch {batch}) "
        f"{times['batched']:.1f} s = {tokens / times['batched']:.1f} tok/s; one at a time {times['single']:.1f} s = "
        f"{tokens / times['single']:.1f} tok/s"
    )
    same = 0
    for i, (a, b) in enumerate(zip(replies["batched"], replies["single"])):
        if a == b:
            same += 1
            continue
        k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f"  reply {i} differs from character {k}:\n    batched: …{a[max(0, k - 30) : k + 60]!r}")
        print(f"    single:  …{b[max(0, k - 30) : k + 60]!r}")
    print(f"  identical replies: {same}/{len(chats)}; first reply: {replies['single'][0][:160]!r}")
    return {
        "gen_batched_tok_s": tokens / times["batched"],
        "gen_single_tok_s": tokens / times["single"],
        "gen_speedup": times["single"] / times["batched"],
        "gen_identical": same / len(chats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--precision-steps", type=int, default=0, help="0: only where bfloat16 is native")
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache" / "students"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    work = throwaway_stack("bench-real-")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    from empathy_distill.config import StudentConfig, TrainingConfig
    from empathy_distill.training.arguments import cpu_has_bf16, use_bf16
    from empathy_distill.training.sft import sft_examples
    from empathy_distill.training.sources import resolve_student
    from empathy_distill.training.student import load_student

    figures: dict[str, float] = {}
    native = cpu_has_bf16() or torch.cuda.is_available()
    peak32 = matmul_peak("float32")
    # emulated bfloat16 takes minutes for five 2048² products: compared at 512² there
    size = 2048 if native else 512
    peak16 = matmul_peak("bfloat16", size)
    slower = (matmul_peak("float32", size) if size != 2048 else peak32) / peak16
    print(
        f"matmul peak ({torch.get_num_threads()} threads): float32 {peak32 / 1e9:.1f} GFLOP/s (2048²), bfloat16 "
        f"{peak16 / 1e9:.1f} GFLOP/s ({size}², "
        + ("native)" if native else f"no AMX/AVX512-BF16: emulated, {slower:.1f}x slower than float32 at {size}²)")
    )
    bf16 = use_bf16(TrainingConfig())  # what training.precision: auto picks here
    peak = peak16 if bf16 and size == 2048 else peak32
    figures.update(peak32_gflops=peak32 / 1e9, peak16_gflops=peak16 / 1e9)

    student = StudentConfig(model=args.student, cache_dir=args.cache_dir)
    start = time.perf_counter()
    folder, info = resolve_student(args.student, args.cache_dir)
    tokenizer, model, fmt = load_student(folder, student)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    origin = info.get("gguf", {})
    print(
        f"student: {args.student}, {n_params / 1e6:.1f}M parameters, loaded in {time.perf_counter() - start:.1f} s"
        + (f" ({origin.get('package', '')}, {origin.get('file', '')})" if origin else "")
    )
    table, sets = sample_sets()
    rows = sets.sft
    examples = sft_examples(rows, tokenizer, fmt)
    lengths = [len(e["input_ids"]) for e in examples]
    random_pad, grouped_pad = pad_share(lengths, args.batch, False), pad_share(lengths, args.batch, True)
    print(
        f"padding, {len(examples)} SFT rows of {min(lengths)}-{max(lengths)} tokens (mean "
        f"{statistics.mean(lengths):.0f}), batch {args.batch}: random batches {random_pad:.1%} pad tokens, "
        f"length-grouped {grouped_pad:.1%}"
    )
    figures.update(pad_random=random_pad, pad_grouped=grouped_pad)
    grouped = TrainingConfig().group_by_length  # the pipeline's default sampler, on both sides

    sets_dir = work / "sets"
    sets_dir.mkdir()
    rows.to_parquet(sets_dir / "sft.parquet", index=False)
    sets.dpo.to_parquet(sets_dir / "dpo.parquet", index=False)
    # one short untimed run a side first: the stores' tables, imports, first-call caches
    plain_trl(folder, examples, 1, args.batch, args.lr, work / "plain-warm", grouped, bf16)
    ours(folder, sets_dir, student, 1, args.batch, args.lr, work / "ours-warm", grouped)
    plain_times, our_times, loops, tokens = [], [], [], set()
    for i in range(args.rounds):
        for side in ("plain", "ours") if i % 2 == 0 else ("ours", "plain"):
            if side == "plain":
                total, seen, loop, _ = plain_trl(
                    folder, examples, args.steps, args.batch, args.lr, work / f"plain{i}", grouped, bf16
                )
                plain_times.append(total)
                loops.append(loop)
                tokens.add(seen)
            else:
                our_times.append(
                    ours(folder, sets_dir, student, args.steps, args.batch, args.lr, work / f"ours{i}", grouped)
                )
        print(f"round {i + 1}: plain TRL {plain_times[-1]:.1f} s, train_sft step in ZenML {our_times[-1]:.1f} s")
    seen = max(tokens)
    plain, mine, loop = statistics.mean(plain_times), statistics.mean(our_times), statistics.mean(loops)
    ratios = [o / p for o, p in zip(our_times, plain_times)]
    flops = 4 * n_params * seen
    print(
        f"SFT {args.steps} steps x batch {args.batch} ({'bf16 autocast' if bf16 else 'float32'}, "
        f"{'length-grouped' if grouped else 'random'} batches): {seen} trained tokens; plain TRL {seen / plain:.1f} "
        f"tok/s end to end, {seen / loop:.1f} tok/s in its training loop; the pipeline's step {seen / mine:.1f} tok/s "
        f"end to end (means over the rounds); ratio (time) {mine / plain:.3f}, per round "
        + ", ".join(f"{r:.3f}" for r in ratios)
    )
    print(
        f"achieved {flops / loop / 1e9:.1f} GFLOP/s in the training loop (4·N per token) = {flops / loop / peak:.0%} "
        f"of the {'bfloat16' if bf16 else 'float32'} matmul peak; end to end (load, save, ZenML, MLflow) "
        f"{flops / mine / 1e9:.1f} GFLOP/s = {flops / mine / peak:.0%}"
    )
    figures.update(
        sft_ratio=mine / plain,
        sft_ratio_spread=max(ratios) - min(ratios),
        sft_tok_s_ours=seen / mine,
        sft_tok_s_loop=seen / loop,
        mfu_loop=flops / loop / peak,
        mfu_end_to_end=flops / mine / peak,
    )

    steps = args.precision_steps or (args.steps if native else 0)
    if steps:
        curves = {}
        for name, on in (("float32", False), ("bf16-autocast", True)):
            total, _, loop, losses = plain_trl(folder, examples, steps, args.batch, args.lr, work / name, grouped, on)
            curves[name] = (loop, losses)
            print(f"precision {name}: {loop:.1f} s for {steps} steps, loss " + " ".join(f"{x:.3f}" for x in losses))
        diff = max(abs(a - b) for a, b in zip(curves["float32"][1], curves["bf16-autocast"][1]))
        print(
            f"  largest loss difference {diff:.3f}; bf16 autocast time / float32 time "
            f"{curves['bf16-autocast'][0] / curves['float32'][0]:.2f}"
        )
        figures.update(precision_loss_diff=diff, bf16_time_ratio=curves["bf16-autocast"][0] / curves["float32"][0])
    else:
        print(
            f"precision: float32 (training.precision: auto); bfloat16 autocast not trained here: this CPU has no "
            f"AMX/AVX512-BF16 and its emulated bfloat16 matmul ran {slower:.1f}x slower than float32"
        )

    figures.update(generation(folder, student, table, args.prompts, args.max_new_tokens, 16))
    print(" ".join(f"{k}={v:.4g}" for k, v in figures.items()))


if __name__ == "__main__":
    sys.exit(main())
