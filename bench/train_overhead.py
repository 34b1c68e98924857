"""The pipeline's training steps vs a plain TRL script: same model, data and settings.

    .venv/bin/python bench/train_overhead.py [--sft-steps 600] [--dpo-steps 400] [--rounds 2]

Both sides train the same tiny student (built once from data/sample) with LoRA: SFT for
``--sft-steps`` steps, then DPO from the SFT adapter for ``--dpo-steps``.
"Ours" is what the pipeline runs: the ``train_sft`` and ``train_dpo`` steps inside a ZenML run
on a local stack with the MLflow experiment tracker (parameters, every step's metrics, loss
plots), the adapter materializer copying each adapter into the artifact store, the sets read
back from artifacts; timed from the pipeline call to its return. "Plain" is the few lines of
TRL a user would write, in the same process. The sides alternate, the first of a round switching
each round (plain, ours, ours, plain, ...), for ``--rounds`` rounds, each run from scratch. The last line is

    overhead_ratio=<mean ours / mean plain> overhead_spread=<highest - lowest per-round ratio>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import sample_world, throwaway_stack


def plain_trl(base: str, sets, sft_steps: int, dpo_steps: int, out: Path, batch: int, lr: float) -> float:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from empathy_distill.data.training_sets import to_conversational

    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear")
    from empathy_distill.config import TrainingConfig
    from empathy_distill.training.arguments import use_bf16

    bf16 = use_bf16(TrainingConfig())  # the same precision the pipeline's default (training.precision: auto) picks
    common = dict(
        learning_rate=lr,
        per_device_train_batch_size=batch,
        max_length=256,
        logging_steps=1,
        save_steps=50,
        save_total_limit=2,
        report_to="none",
        seed=0,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),  # as the pipeline's trainer_args: bf16 on a CPU needs it
        gradient_checkpointing=False,
    )  # TRL defaults to True; ours runs with training.gradient_checkpointing=false
    sft = SFTTrainer(
        model=model,
        args=SFTConfig(output_dir=str(out / "sft"), max_steps=sft_steps, completion_only_loss=True, **common),
        train_dataset=Dataset.from_list(to_conversational(sets.sft)),
        processing_class=tok,
        peft_config=lora,
    )
    sft.train()
    sft.model.save_pretrained(str(out / "sft_adapter"))
    base_model = AutoModelForCausalLM.from_pretrained(base)
    policy = PeftModel.from_pretrained(base_model, str(out / "sft_adapter"), is_trainable=True)
    dpo = DPOTrainer(
        model=policy,
        args=DPOConfig(output_dir=str(out / "dpo"), max_steps=dpo_steps, beta=0.1, **common),
        train_dataset=Dataset.from_list(to_conversational(sets.dpo)),
        processing_class=tok,
    )
    dpo.train()
    dpo.model.save_pretrained(str(out / "dpo_adapter"), selected_adapters=["default"])
    return time.perf_counter() - start


def ours(base: str, sets_dir: Path, student, sft_steps: int, dpo_steps: int, out: Path, batch: int, lr: float) -> float:
    """The real steps in a ZenML run (cache off), on the active local stack with its MLflow tracker."""
    from empathy_distill.config import StageSettings, TrainingConfig

    training = TrainingConfig(
        output_dir=str(out),
        sft=StageSettings(learning_rate=lr, batch_size=batch, max_steps=sft_steps),
        dpo=StageSettings(learning_rate=lr, batch_size=batch, max_steps=dpo_steps),
    )
    start = time.perf_counter()
    from _training_pipeline import training_steps

    training_steps.with_options(enable_cache=False)(
        base=base, sets_dir=str(sets_dir), training=training, student=student
    )
    return time.perf_counter() - start


ZENML_PROBE = textwrap.dedent(
    """
    import time
    from typing import Annotated
    from zenml import pipeline, step

    @step(enable_cache=False)
    def noop(x: int) -> Annotated[int, "y"]:
        return x + 1

    @pipeline(enable_cache=False)
    def chain(n: int) -> None:
        x = noop(0)
        for _ in range(n - 1):
            x = noop(x)

    n = {n}
    chain(n)  # warm-up: store creation and imports
    start = time.perf_counter()
    chain(n)
    piped = time.perf_counter() - start
    start = time.perf_counter()
    x = 0
    for _ in range(n):
        x = noop.entrypoint(x)
    bare = time.perf_counter() - start
    print((piped - bare) / n)
    """
)


def zenml_step_overhead(n: int = 8) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "ZENML_CONFIG_PATH": tmp,
            "ZENML_ANALYTICS_OPT_IN": "false",
            "ZENML_LOGGING_VERBOSITY": "ERROR",
        }
        probe = Path(tmp) / "zenml_probe.py"  # ZenML needs a main module with a file as its source root
        probe.write_text(ZENML_PROBE.format(n=n))
        proc = subprocess.run(
            [sys.executable, str(probe)], cwd=tmp, env=env, capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-steps", type=int, default=600)
    parser.add_argument("--dpo-steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="plain, ours pairs (at least 2)")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    work = throwaway_stack("bench-train-")
    _, sets, student, base = sample_world(work / "students", hidden=128, layers=4)
    sets_dir = work / "sets"
    sets_dir.mkdir()
    sets.sft.to_parquet(sets_dir / "sft.parquet", index=False)
    sets.dpo.to_parquet(sets_dir / "dpo.parquet", index=False)
    lr = 1e-3
    # one short untimed run a side first: the stores' tables, imports, first-call caches (a run's cost, not a step's)
    plain_trl(base, sets, 2, 2, work / "plain-warm", args.batch, lr)
    ours(base, sets_dir, student, 2, 2, work / "ours-warm", args.batch, lr)
    plain_times, our_times = [], []
    for i in range(args.rounds):  # plain, ours, ours, plain, ...: a drift of the machine over the run favours neither
        for side in ("plain", "ours") if i % 2 == 0 else ("ours", "plain"):
            if side == "plain":
                plain_times.append(
                    plain_trl(base, sets, args.sft_steps, args.dpo_steps, work / f"plain{i}", args.batch, lr)
                )
            else:
                our_times.append(
                    ours(base, sets_dir, student, args.sft_steps, args.dpo_steps, work / f"ours{i}", args.batch, lr)
                )
        print(f"round {i + 1}: plain TRL {plain_times[-1]:.1f} s, pipeline steps {our_times[-1]:.1f} s", flush=True)
    ratios = [o / p for o, p in zip(our_times, plain_times)]
    print(
        f"SFT {args.sft_steps} + DPO {args.dpo_steps} steps, batch {args.batch}: per-round ratios "
        + ", ".join(f"{r:.3f}" for r in ratios)
    )
    step = zenml_step_overhead()
    print(f"ZenML fixed cost per step (no-op steps on a local store): {step:.2f} s")
    ratio = (sum(our_times) / len(our_times)) / (sum(plain_times) / len(plain_times))
    print(f"overhead_ratio={ratio:.3f} overhead_spread={max(ratios) - min(ratios):.3f} step_overhead_s={step:.2f}")


if __name__ == "__main__":
    main()
