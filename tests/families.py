"""Random-weight stand-ins of the model families users put in ``student.model``, saved as ordinary model folders.

Each keeps what matters to a distillation run: the family's architecture class (GPT-2's Conv1D
included), its special tokens (bos/eos/pad as the family sets them, none where it has none), a
chat template written to the family's conventions (end-of-turn token, no system role, strict
alternation, none at all) and its generation_config eos ids (a list where the family lists
several). The tokenizer is a small byte-level BPE trained on a few sentences, the model a couple
of layers of width 32: nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORDS = [
    "That sounds really hard and I am sorry you are going through it.",
    "I can hear how much this matters to you, and it makes sense to feel upset.",
    "Would it help to talk about what happened? I am here to listen.",
    "You did the best you could with what you knew at the time.",
    "It is okay to feel proud of yourself for getting through a tough week.",
]

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    """One stand-in: its config class, special tokens, template and eos ids, and what a run must respect."""

    name: str
    config_class: str
    model_class: str
    specials: dict[str, str]
    """bos/eos/pad/unk as the family sets them (absent: the family has none)."""
    extra_specials: list[str]
    template: str | None
    end_of_turn: str
    """What every training target ends with, after the reply."""
    generation_eos: list[str] | str | None
    """generation_config.eos_token_id: one token, a list, or None (the model config's alone)."""
    template_tokens: list[str] = field(default_factory=list)
    """Template text that must never reach a reply."""
    config: dict[str, Any] = field(default_factory=dict)


FAMILIES = [
    Family(
        "llama3",
        "LlamaConfig",
        "LlamaForCausalLM",
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        LLAMA3_TEMPLATE,
        "<|eot_id|>",
        ["<|end_of_text|>", "<|eot_id|>"],
        ["<|start_header_id|>", "<|end_header_id|>", "assistant<|end_header_id|>"],
    ),
    Family(
        "qwen2",
        "Qwen2Config",
        "Qwen2ForCausalLM",
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        ["<|im_start|>"],
        CHATML_TEMPLATE,
        "<|im_end|>",
        ["<|im_end|>", "<|endoftext|>"],
        ["<|im_start|>", "<|im_end|>"],
    ),
    Family(
        "gemma",
        "GemmaConfig",
        "GemmaForCausalLM",
        {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
        ["<start_of_turn>", "<end_of_turn>"],
        GEMMA_TEMPLATE,
        "<end_of_turn>",
        "<eos>",  # only the eos: the template's <end_of_turn> must be found from the template itself
        ["<start_of_turn>", "<end_of_turn>", "model\n"],
        {"head_dim": 8},
    ),
    Family(
        "mistral",
        "MistralConfig",
        "MistralForCausalLM",
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
        ["[INST]", "[/INST]"],
        MISTRAL_TEMPLATE,
        "</s>",
        None,
        ["[INST]", "[/INST]"],
    ),
    Family(
        "phi3",
        "Phi3Config",
        "Phi3ForCausalLM",
        {"bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>"},
        ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        PHI3_TEMPLATE,
        "<|end|>",
        ["<|endoftext|>", "<|end|>"],
        ["<|user|>", "<|assistant|>", "<|end|>", "<|system|>"],
    ),
    Family(
        "gpt2",
        "GPT2Config",
        "GPT2LMHeadModel",
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
        [],
        None,
        "<|endoftext|>",
        None,
        ["<|user|>", "<|assistant|>", "<|system|>"],
    ),
]
BY_NAME = {f.name: f for f in FAMILIES}


def build_family(family: Family, folder: Path, seed: int = 0) -> Path:
    """Saves a random-weight stand-in of ``family`` as a model folder (tokenizer, config, generation_config)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast

    specials = list(dict.fromkeys([*family.specials.values(), *family.extra_specials]))
    tok = Tokenizer(models.BPE(unk_token=family.specials.get("unk_token")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        WORDS * 4,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, additional_special_tokens=family.extra_specials, **family.specials
    )
    if family.template:
        fast.chat_template = family.template
    ids = {name: fast.convert_tokens_to_ids(token) for name, token in family.specials.items()}
    common = {
        "vocab_size": len(fast),
        "bos_token_id": ids.get("bos_token"),
        "eos_token_id": ids.get("eos_token"),
        "pad_token_id": ids.get("pad_token"),
    }
    if family.config_class == "GPT2Config":
        shape = {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 256}
    else:
        shape = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 256,
            **family.config,
        }
    config = getattr(transformers, family.config_class)(**common, **shape)
    torch.manual_seed(seed)
    model = getattr(transformers, family.model_class)(config)
    eos = family.generation_eos
    eos_ids = (
        [fast.convert_tokens_to_ids(t) for t in eos]
        if isinstance(eos, list)
        else fast.convert_tokens_to_ids(eos)
        if eos
        else ids.get("eos_token")
    )
    model.generation_config = GenerationConfig(
        bos_token_id=ids.get("bos_token"), eos_token_id=eos_ids, pad_token_id=ids.get("pad_token")
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
