"""Our SFT + DPO training code vs a plain TRL script: same model, data and settings.

    .venv/bin/python bench/train_overhead.py [--sft-steps 600] [--dpo-steps 400]

Both sides train the same tiny student (built once from data/sample) with LoRA:
SFT for ``--sft-steps`` steps, then DPO from the SFT adapter for ``--dpo-steps``.
"Ours" is ``empathy_distill.training`` (metric recording, adapter hashes, the
no-change check, checkpoints keyed by inputs, reward scoring of the training
pairs); "plain" is the few lines of TRL a user would write. The defaults give
more than a minute of training per side so that fixed start-up costs do not
dominate. Separately, the fixed cost ZenML adds per step is measured: a pipeline
of no-op steps on a throw-away local store, minus the same functions called
directly. The last line is

    overhead_ratio=<ours / plain> step_overhead_s=<seconds per step>
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

from _common import sample_world


def plain_trl(base: str, sets, sft_steps: int, dpo_steps: int, out: Path, batch: int, lr: float) -> float:
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from empathy_distill.data.training_sets import to_conversational

    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear")
    import torch

    bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
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


def ours(base: str, sets, student, sft_steps: int, dpo_steps: int, out: Path, batch: int, lr: float) -> float:
    from empathy_distill.config import StageSettings, TrainingConfig
    from empathy_distill.training.dpo import train_dpo
    from empathy_distill.training.sft import train_sft

    start = time.perf_counter()
    cfg = TrainingConfig(
        output_dir=str(out),
        sft=StageSettings(learning_rate=lr, batch_size=batch, max_steps=sft_steps),
        dpo=StageSettings(learning_rate=lr, batch_size=batch, max_steps=dpo_steps),
    )
    sft = train_sft(base, sets.sft, cfg, student)
    train_dpo(base, sets.dpo, cfg, student, sft.adapter_dir)
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
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    warnings.filterwarnings("ignore")
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    _, sets, student, base = sample_world(work / "students", hidden=128, layers=4)
    lr = 1e-3
    # alternate the order so that neither side always runs on a cold machine
    t_plain_1 = plain_trl(base, sets, args.sft_steps, args.dpo_steps, work / "plain1", args.batch, lr)
    t_ours_1 = ours(base, sets, student, args.sft_steps, args.dpo_steps, work / "ours1", args.batch, lr)
    t_ours_2 = ours(
        base, sets, student, args.sft_steps, args.dpo_steps, work / "ours2", args.batch, lr * 0.999
    )  # a new key: trains again
    t_plain_2 = plain_trl(base, sets, args.sft_steps, args.dpo_steps, work / "plain2", args.batch, lr)
    print(
        f"plain TRL: {t_plain_1:.1f} s, {t_plain_2:.1f} s; ours: {t_ours_1:.1f} s, {t_ours_2:.1f} s "
        f"(SFT {args.sft_steps} + DPO {args.dpo_steps} steps, batch {args.batch}, student {base})",
        flush=True,
    )
    step = zenml_step_overhead()
    print(f"ZenML fixed cost per step (no-op steps on a local store): {step:.2f} s")
    ratio = min(t_ours_1, t_ours_2) / min(t_plain_1, t_plain_2)
    print(f"overhead_ratio={ratio:.3f} step_overhead_s={step:.2f}")


if __name__ == "__main__":
    main()
