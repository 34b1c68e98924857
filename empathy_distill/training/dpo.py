"""DPO with TRL's ``DPOTrainer`` (beta 0.1, sigmoid loss), starting from the SFT adapter.

How the reference works: the SFT adapter is loaded as a *trainable* PEFT model and no
``ref_model`` is passed. TRL then copies that adapter into a second, frozen adapter
named ``ref`` and computes reference log-probabilities with it, so the reference is
the frozen SFT adapter (not the bare base model) and only one copy of the base
weights is in memory. For a DPO-only run (``training.stages: dpo``) a fresh LoRA
adapter is trained and the reference is the base model with adapters disabled.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from empathy_distill.config import StudentConfig, TrainingConfig
from empathy_distill.data.training_sets import to_conversational
from empathy_distill.training.arguments import lora_config, make_trainer, trainer_args
from empathy_distill.training.chat import ChatFormat
from empathy_distill.training.fingerprint import model_fingerprint
from empathy_distill.training.metrics import metrics_recorder
from empathy_distill.training.resume import StageResult, run_stage, stage_key
from empathy_distill.training.student import load_student


def dpo_examples(pairs: pd.DataFrame, tokenizer, fmt: ChatFormat) -> list[dict[str, list[int]]]:
    """Tokenized pairs: the generation prompt, then chosen and rejected, each ending with the end-of-turn tokens."""
    return [
        fmt.encode_dpo(tokenizer, row["prompt"], row["chosen"][0]["content"], row["rejected"][0]["content"])
        for row in to_conversational(pairs)
    ]


TRL_PRIVATE_API = ("_prepare_dataset", ("self", "dataset", "processing_class", "args", "dataset_name"))
"""The private ``DPOTrainer`` method :func:`pretokenized_dpo_trainer` overrides, and its parameters as of TRL 0.23 to
1.16 (checked before every override: a TRL release that renames or reshapes it stops training with one line)."""


def check_trl_private_api(base) -> None:
    """Raises when ``base`` (a ``DPOTrainer`` class) no longer has the private method we override, as we call it.

    Raises:
        RuntimeError: naming the installed TRL version and what changed.
    """
    import inspect

    import trl

    name, expected = TRL_PRIVATE_API
    method = getattr(base, name, None)
    found = tuple(inspect.signature(method).parameters) if callable(method) else None
    if found != expected:
        raise RuntimeError(
            f"trl {trl.__version__}: {base.__name__}.{name} is {'gone' if found is None else found}, not {expected}; "
            "training/dpo.py overrides it to keep pre-tokenized rows as they are: pin trl to a release it was tested "
            "with (constraints.txt) or port the override"
        )


def pretokenized_dpo_trainer(base):
    """``DPOTrainer`` that takes rows already tokenized (``prompt_ids``, ``chosen_ids``, ``rejected_ids``) as they are.

    TRL tokenizes DPO rows itself (SFT rows it takes as they are): through the chat template for conversational
    rows, with a bare eos appended for plain ones, neither of which ends a completion with a family's end-of-turn
    tokens exactly. Rows whose prompt alone fills ``max_length`` are dropped, as TRL does. The override is of a
    private method: :func:`check_trl_private_api` first.
    """
    check_trl_private_api(base)

    class PreTokenizedDPOTrainer(base):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" not in dataset.column_names:
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if args.max_length is not None and args.truncation_mode == "keep_start":
                dataset = dataset.filter(lambda example: len(example["prompt_ids"]) < args.max_length)
            return dataset

    return PreTokenizedDPOTrainer


def build_dpo_trainer(
    base_model: str,
    pairs: pd.DataFrame,
    cfg: TrainingConfig,
    student: StudentConfig,
    sft_adapter: str | None,
    output_dir: Path,
):
    """The DPOTrainer, its metrics recorder and the dataset (also used to score reward accuracy)."""
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    tokenizer, model, fmt = load_student(base_model, student)
    peft_config = None
    if sft_adapter:
        model = PeftModel.from_pretrained(model, sft_adapter, is_trainable=True)
    else:
        peft_config = lora_config(cfg.lora)
    dataset = Dataset.from_list(dpo_examples(pairs, tokenizer, fmt))
    args = DPOConfig(**trainer_args(cfg.dpo, cfg, output_dir), beta=cfg.beta, loss_type=[cfg.loss_type])
    recorder = metrics_recorder("dpo")
    trainer = make_trainer(
        pretokenized_dpo_trainer(DPOTrainer), model, args, dataset, tokenizer, peft_config, [recorder]
    )
    return trainer, recorder, dataset, tokenizer


def fit_dpo(
    base_model: str,
    pairs: pd.DataFrame,
    cfg: TrainingConfig,
    student: StudentConfig,
    sft_adapter: str | None = None,
    announce=None,
) -> StageResult:
    """Trains the DPO adapter (from the SFT adapter when given); raises :class:`AdapterUnchanged` when nothing moved."""
    key = stage_key(
        "dpo",
        base_model,
        model_fingerprint(base_model),
        student.chat_template,
        sft_adapter,
        pd.util.hash_pandas_object(pairs, index=False).sum(),
        cfg.dpo.model_dump(),
        cfg.lora.model_dump(),
        cfg.beta,
        cfg.loss_type,
        cfg.seed,
        *([cfg.num_processes] if cfg.num_processes > 1 else []),
    )
    built = {}

    def build(checkpoints: Path):
        trainer, recorder, built["dataset"], tokenizer = build_dpo_trainer(
            base_model, pairs, cfg, student, sft_adapter, checkpoints
        )
        return trainer, recorder, tokenizer

    def score(trainer) -> dict[str, float]:
        """Implicit reward accuracy and margin against the reference, on the pairs the run trained on (up to 64):
        a forward pass of policy and reference over each, so a short run is not scored on pairs it never saw at
        several times its own cost."""
        dataset = built["dataset"]
        args = trainer.args
        seen = trainer.state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps
        scored = trainer.evaluate(eval_dataset=dataset.select(range(max(1, min(len(dataset), 64, seen)))))
        return {k.removeprefix("eval_"): float(v) for k, v in scored.items() if k.startswith("eval_rewards/")}

    return run_stage(
        "dpo", Path(cfg.output_dir) / f"dpo-{key}", len(pairs), base_model, build, score, announce=announce
    )
