"""Student conformance: the families users name train, stop and serve correctly (tests/families.py stand-ins).

For each family, on a random-weight model folder: SFT labels and DPO completions end with exactly the
family's end-of-turn; generation stops at any end-of-turn id and marks a reply that ran to
``max_new_tokens``; no template token or prompt text reaches a reply; the served reply equals the
in-process one; the registered version loads after its base folder is deleted, and a reference to a
folder that is gone or holds another model is refused in one line.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from empathy_distill.config import GenerationSettings, StageSettings, StudentConfig, TrainingConfig
from empathy_distill.training.generate import generate
from empathy_distill.training.student import load_student
from tests.families import FAMILIES, build_family

SYSTEM = "You are a caring listener."
ROWS = pd.DataFrame(
    {
        "dialogue_id": ["a", "b"],
        "system": [SYSTEM, SYSTEM],
        "user": ["I failed my driving test today.", "My best friend moved away."],
        "response": ["That sounds really hard, I am sorry.", "You must miss her a lot."],
    }
).astype("string")
PAIRS = pd.DataFrame(
    {
        "dialogue_id": ["a", "b"],
        "system": [SYSTEM, SYSTEM],
        "user": ["I failed my driving test today.", "My best friend moved away."],
        "chosen": ["That sounds really hard, I am sorry.", "You must miss her a lot."],
        "rejected": ["Okay.", "Move on."],
    }
).astype("string")
CHATS = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": u}] for u in ROWS["user"]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f.name: build_family(f, root / f.name) for f in FAMILIES}


def family_params():
    return [pytest.param(f, id=f.name) for f in FAMILIES]


def training_config(tmp_path) -> TrainingConfig:
    stage = StageSettings(max_steps=1, batch_size=2, learning_rate=1e-3, max_length=128)
    return TrainingConfig(sft=stage, dpo=stage, output_dir=str(tmp_path / "training"))


@pytest.mark.parametrize("family", family_params())
def test_sft_labels_are_the_reply_and_the_end_of_turn(family, folders, tmp_path):
    from empathy_distill.training.sft import build_sft_trainer

    base = str(folders[family.name])
    trainer, _, tokenizer = build_sft_trainer(
        base, ROWS, training_config(tmp_path), StudentConfig(model=base), tmp_path / "ckpt"
    )
    for row, reply in zip(trainer.train_dataset, ROWS["response"]):
        labelled = [t for t in row["labels"] if t != -100]
        assert tokenizer.decode(labelled) == reply + family.end_of_turn
        # the prompt (with the system turn, folded where the template has none) is in the input, never in the labels
        prompt = tokenizer.decode(row["input_ids"][: len(row["input_ids"]) - len(labelled)])
        assert "caring listener" in prompt
        if family.template is None:  # the fallback template ends every turn with the model's own eos, no other text
            assert prompt.count(family.end_of_turn) == 2 and "</s>" not in prompt


@pytest.mark.parametrize("family", family_params())
def test_dpo_completions_end_with_the_end_of_turn(family, folders, tmp_path):
    from empathy_distill.training.dpo import build_dpo_trainer

    base = str(folders[family.name])
    trainer, _, _, tokenizer = build_dpo_trainer(
        base, PAIRS, training_config(tmp_path), StudentConfig(model=base), None, tmp_path / "ckpt"
    )
    for row, chosen, rejected in zip(trainer.train_dataset, PAIRS["chosen"], PAIRS["rejected"]):
        assert tokenizer.decode(row["chosen_ids"]) == chosen + family.end_of_turn
        assert tokenizer.decode(row["rejected_ids"]) == rejected + family.end_of_turn
        assert "caring listener" in tokenizer.decode(row["prompt_ids"])


def force_tokens(model, plan: dict[int, list[int]]):
    """A hook on the output head: at generation step k, row r's next token is ``plan[r][k]`` (its last one after)."""
    head = model.get_output_embeddings()
    calls = force_tokens.calls = {"n": 0}

    def hook(module, inputs, output):
        step = calls["n"]
        calls["n"] += 1
        forced = output.clone()
        for row, tokens in plan.items():
            token = tokens[min(step, len(tokens) - 1)]
            forced[row, -1, :] = -1e4
            forced[row, -1, token] = 1e4
        return forced

    return head.register_forward_hook(hook)


def word_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("family", family_params())
def test_generation_stops_at_the_end_of_turn_and_marks_a_run_on(family, folders):
    base = str(folders[family.name])
    tokenizer, model, fmt = load_student(base, StudentConfig(model=base))
    eot = tokenizer.convert_tokens_to_ids(family.end_of_turn)
    words = word_ids(tokenizer, " I am here")
    # a template token the model may emit mid-reply (a header, a role tag): never shown in the reply
    marker = [tokenizer.convert_tokens_to_ids(t) for t in family.template_tokens[:1] if t in tokenizer.get_vocab()]
    stopping = [*words[:2], *marker, words[-1], eot, *words]  # anything after the end-of-turn must never appear
    running = words * 10  # never ends its turn
    handle = force_tokens(model, {0: stopping, 1: running})
    try:
        replies = generate(model, tokenizer, CHATS, GenerationSettings(max_new_tokens=12, batch_size=2), fmt=fmt)
    finally:
        handle.remove()
    stopped, ran_on = replies
    expected = tokenizer.decode([*words[:2], words[-1]]).strip()
    assert stopped.text == expected and stopped.finish_reason == "stop"
    assert stopped.completion_tokens == len(words[:2]) + len(marker) + 2
    assert ran_on.finish_reason == "length" and ran_on.completion_tokens == 12
    assert ran_on.text == tokenizer.decode((words * 10)[:12]).strip()  # not trimmed: all of it, marked
    for reply in replies:
        assert not any(t in reply.text for t in [*tokenizer.all_special_tokens, *family.template_tokens])
        assert SYSTEM not in reply.text and "driving test" not in reply.text
    # alone in its batch, the stopping chat costs exactly its tokens: generation itself stopped at the end-of-turn
    handle = force_tokens(model, {0: stopping})
    try:
        (alone,) = generate(model, tokenizer, CHATS[:1], GenerationSettings(max_new_tokens=12), fmt=fmt)
    finally:
        handle.remove()
    assert alone == stopped and force_tokens.calls["n"] == stopped.completion_tokens


@pytest.mark.parametrize("family", family_params())
def test_random_weights_never_leak_template_or_prompt(family, folders):
    base = str(folders[family.name])
    tokenizer, model, fmt = load_student(base, StudentConfig(model=base))
    replies = generate(model, tokenizer, CHATS, GenerationSettings(max_new_tokens=16, batch_size=2), fmt=fmt)
    for reply in replies:
        assert not any(t in reply.text for t in tokenizer.all_special_tokens if t.strip())
        assert SYSTEM not in reply.text


def random_adapter(base: str, folder, seed: int = 1) -> str:
    """A LoRA adapter with random, non-zero weights (so tuned differs from base), saved as PEFT saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules="all-linear"),
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_experiment("families")
    yield root
    mlflow.set_tracking_uri(None)


def register(adapter: str, base: str, name: str, bundle_max_mb: int = 2048):
    """As the register step does it: a local base up to ``bundle_max_mb`` is bundled, else referenced."""
    import mlflow

    from empathy_distill.registry.pyfunc import bundle_base, log_student_model

    with mlflow.start_run():
        info = log_student_model(
            adapter,
            base,
            bundle_base=bundle_base(base, bundle_max_mb),
            chat_template=None,
            dtype="float32",
            generation={"max_new_tokens": 12, "temperature": 0.0, "top_p": 1.0, "no_repeat_ngram_size": 0},
            system_prompt=SYSTEM,
            model_name=name,
        )
    return f"models:/{name}/{info.registered_model_version}"


@pytest.mark.parametrize("family", family_params())
def test_served_reply_equals_in_process_and_loads_after_the_base_is_gone(family, tmp_path, mlflow_store):
    import mlflow
    from peft import PeftModel

    base = str(build_family(family, tmp_path / "base"))
    adapter = random_adapter(base, tmp_path / "adapter")
    uri = register(adapter, base, f"student-{family.name}")

    tokenizer, model, fmt = load_student(base, StudentConfig(model=base, dtype="float32"))
    model = PeftModel.from_pretrained(model, adapter)
    settings = GenerationSettings(max_new_tokens=12, batch_size=2)
    in_process = generate(model, tokenizer, CHATS, settings, fmt=fmt)

    shutil.rmtree(base)  # the registered version carries its base: nothing refers to this folder any more
    served = mlflow.pyfunc.load_model(uri).predict(
        pd.DataFrame({"messages": [[m for m in chat if m["role"] == "user"] for chat in CHATS]})  # system added
    )
    assert list(served["response"]) == [r.text for r in in_process]
    assert list(served["finish_reason"]) == [r.finish_reason for r in in_process]


def test_a_referenced_base_that_moved_or_changed_is_refused_in_one_line(tmp_path, mlflow_store):
    import mlflow
    from mlflow.exceptions import MlflowException

    family = FAMILIES[0]
    base = str(build_family(family, tmp_path / "base"))
    adapter = random_adapter(base, tmp_path / "adapter")
    uri = register(adapter, base, "student-reference", bundle_max_mb=0)
    assert len(mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"messages": [CHATS[0]]}))) == 1

    build_family(family, tmp_path / "base", seed=7)  # another model at the same path
    with pytest.raises(MlflowException) as changed:
        mlflow.pyfunc.load_model(uri)
    shutil.rmtree(base)
    with pytest.raises(MlflowException) as gone:
        mlflow.pyfunc.load_model(uri)
    for exc, what in ((changed, "is not the registered base"), (gone, "not found")):
        message = str(exc.value.message)
        assert what in message and "base_model" in message and "SERVING_MODEL_CONFIG" in message
        assert "\n" not in message


def test_a_different_model_at_the_same_path_retrains(tmp_path):
    from empathy_distill.training.sft import fit_sft

    base = str(build_family(FAMILIES[0], tmp_path / "base"))
    cfg, student = training_config(tmp_path), StudentConfig(model=base)
    first = fit_sft(base, ROWS, cfg, student)
    assert fit_sft(base, ROWS, cfg, student).reused  # the same model: the finished stage is reused
    build_family(FAMILIES[0], tmp_path / "base", seed=3)
    again = fit_sft(base, ROWS, cfg, student)
    assert not again.reused and again.adapter_dir != first.adapter_dir
