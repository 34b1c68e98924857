"""A tiny Llama with a tokenizer trained on a few sentences, saved as a normal model folder (no hub)."""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_chat_model(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [
        "That sounds hard, I am here for you.",
        "I can see why you feel that way.",
        "Would it help to talk about it?",
    ] * 20
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"])
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def register_tiny_versions(folder: Path, tracking_uri: str, model: str, seeds: tuple[int, ...] = (1,)) -> list[str]:
    """One tiny base (bundled) and one random LoRA adapter per seed, each logged as the real pyfunc model and
    registered as a new version of ``model``; returns the version numbers. No alias is set."""
    import mlflow
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from empathy_distill.registry.pyfunc import log_student_model

    base = build_tiny_chat_model(folder / "base")
    versions = []
    mlflow.set_tracking_uri(tracking_uri)
    try:
        for seed in seeds:
            torch.manual_seed(seed)  # adapters that differ: each version answers differently
            peft = get_peft_model(
                AutoModelForCausalLM.from_pretrained(base),
                LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False),
            )
            adapter = folder / f"adapter-{seed}"
            peft.save_pretrained(adapter)
            with mlflow.start_run():
                info = log_student_model(
                    str(adapter),
                    str(base),
                    bundle_base=True,
                    chat_template=None,
                    dtype="float32",
                    generation={"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "no_repeat_ngram_size": 3},
                    system_prompt="Answer kindly.",
                    model_name=model,
                )
            versions.append(str(info.registered_model_version))
    finally:
        mlflow.set_tracking_uri(None)
    return versions
