"""Batched generation for the test prompts: base (adapter disabled) and tuned, from one loaded model.

Prompts are left-padded so that every row of a batch ends where generation starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from empathy_distill.config import GenerationSettings, StudentConfig
from empathy_distill.data.training_sets import user_turn
from empathy_distill.prompts import STUDENT_SYSTEM, load_template
from empathy_distill.training.student import load_student

logger = logging.getLogger(__name__)


def prompts_for_test_split(dialogues: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """One prompt per test dialogue (sorted by id): ``dialogue_id``, ``system``, ``user``."""
    test = (
        dialogues[dialogues["split"] == "test"]
        .groupby("dialogue_id", sort=True)
        .agg(situation=("situation", "first"), utterance=("utterance", "first"))
    )
    if limit:
        test = test.head(limit)
    system = load_template(STUDENT_SYSTEM)
    return pd.DataFrame(
        {
            "dialogue_id": test.index,
            "system": system,
            "user": [user_turn(s, u) for s, u in zip(test["situation"], test["utterance"])],
        }
    )


def generate(
    model, tokenizer, prompts: Sequence[list[dict[str, str]]], settings: GenerationSettings, desc: str = "generate"
) -> list[str]:
    """Replies to chat prompts, ``settings.batch_size`` at a time, left-padded."""
    import torch
    from tqdm.auto import tqdm

    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    device = next(model.parameters()).device
    outputs: list[str] = []
    kwargs = {
        "max_new_tokens": settings.max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if settings.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = settings.no_repeat_ngram_size
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    else:
        kwargs.update(do_sample=False)
    model.eval()
    for start in tqdm(range(0, len(texts), settings.batch_size), desc=desc, unit="batch", disable=None):
        batch = tokenizer(
            texts[start : start + settings.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(device)
        with torch.no_grad():
            out = model.generate(**batch, **kwargs)
        new = out[:, batch["input_ids"].shape[1] :]
        outputs.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    return outputs


def generate_base_and_tuned(
    base_model: str,
    adapter_dir: str | None,
    prompts: pd.DataFrame,
    student: StudentConfig,
    settings: GenerationSettings,
) -> pd.DataFrame:
    """``dialogue_id, base_response, tuned_response`` for each prompt.

    One model is loaded; the base answers run inside ``disable_adapter()``.
    """
    import torch
    from peft import PeftModel

    tokenizer, model = load_student(base_model, student)
    if torch.cuda.is_available():
        model = model.to("cuda")
    chats = [
        [{"role": "system", "content": s}, {"role": "user", "content": u}]
        for s, u in zip(prompts["system"], prompts["user"])
    ]
    if adapter_dir is None:
        base = generate(model, tokenizer, chats, settings, desc="generate base")
        tuned = list(base)
    else:
        model = PeftModel.from_pretrained(model, adapter_dir)
        with model.disable_adapter():
            base = generate(model, tokenizer, chats, settings, desc="generate base")
        tuned = generate(model, tokenizer, chats, settings, desc="generate tuned")
    return pd.DataFrame(
        {"dialogue_id": prompts["dialogue_id"].to_numpy(), "base_response": base, "tuned_response": tuned}
    ).astype("string")


def champion_replies(model_uri: str, prompts: pd.DataFrame, settings: GenerationSettings) -> list[str]:
    """A registered version's replies to the prompts, through its pyfunc model (as the model server runs it)."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    chats = [
        [{"role": "system", "content": s}, {"role": "user", "content": u}]
        for s, u in zip(prompts["system"], prompts["user"])
    ]
    params = settings.model_dump(include={"max_new_tokens", "temperature", "top_p", "no_repeat_ngram_size"})
    out = model.predict(pd.DataFrame({"messages": chats}), params=params)
    return [str(r) for r in out["response"]]
