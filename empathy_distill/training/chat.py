"""How a student's chat template is used: one probed :class:`ChatFormat` for training, generation and serving.

Families differ in ways that silently break a distillation run: Llama-3 ends a turn with
``<|eot_id|>`` while its ``eos_token`` may be ``<|end_of_text|>`` and its generation_config
lists both; Gemma's template raises on a system message; Mistral's insists on strict
user/assistant alternation (a system turn first breaks it); Phi-3 writes ``<|end|>`` and
then the eos; GPT-2 has no template at all. :func:`resolve_chat_format` renders the template
once on a system + user + assistant chat, before any work, and records what it found:

- whether the system turn is kept or folded into the first user turn;
- the end-of-turn text the template writes after an assistant reply (what training
  targets end with: the reply, then exactly that);
- every token id that ends a reply (generation_config's eos list, the tokenizer's eos and
  the template's end-of-turn), which generation stops at.

A template that cannot render such a chat, even folded, is a :class:`ChatTemplateError` naming
``student.chat_template``. A model without a template gets its family's turn format where its
vocabulary has the turn tokens as special tokens (:data:`FAMILY_FALLBACKS`: Gemma's
``<start_of_turn>``, ChatML's ``<|im_start|>``), else :data:`FALLBACK_CHAT_TEMPLATE`, which ends
every turn with the model's own eos token.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from empathy_distill.errors import ConfigError

logger = logging.getLogger(__name__)

# Role-tagged turns, each ended by the tokenizer's own eos token (``eos_token`` is passed to every template).
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# A base model without a template often still has its family's turn tokens in its vocabulary (Gemma-3 base:
# ``<start_of_turn>``/``<end_of_turn>``; SmolLM2 and Qwen bases: ``<|im_start|>``/``<|im_end|>``). The fallback
# then uses them: role tags written as plain text (``<|assistant|>``) are text a base model continues with, and a
# reply would carry them. Each entry: the (start, end) tokens that must both be special, and the template.
FAMILY_FALLBACKS: tuple[tuple[str, str, str], ...] = (
    (
        "<start_of_turn>",
        "<end_of_turn>",
        "{{ bos_token }}{% for message in messages %}"
        "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
        "{{ '<start_of_turn>' + role + '\n' + message['content'] + '<end_of_turn>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}",
    ),
    (
        "<|im_start|>",
        "<|im_end|>",
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    ),
)


def special_ids(tokenizer) -> set[int]:
    """The tokenizer's special ids, the added tokens marked special included."""
    return set(tokenizer.all_special_ids) | {
        i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)
    }


def fallback_template(tokenizer) -> tuple[str, tuple[int, ...]]:
    """The template for a model that has none, and the ids that start a turn in it (a reply stops there too): the
    family's own turn tokens where the vocabulary has them as special tokens, else :data:`FALLBACK_CHAT_TEMPLATE`."""
    special = special_ids(tokenizer)
    vocab = tokenizer.get_vocab()
    for start, end, template in FAMILY_FALLBACKS:
        if vocab.get(start) in special and vocab.get(end) in special:
            return template, (int(vocab[start]),)
    return FALLBACK_CHAT_TEMPLATE, ()


# Sentinels for the probe: plain words that no template rewrites.
_SYSTEM, _USER, _REPLY = "Probe system text.", "Probe user text.", "Probe reply text."


class ChatTemplateError(ConfigError):
    """The student's chat template cannot render the chats this project trains on."""


@dataclass(frozen=True)
class ChatFormat:
    """What the probe found about a student's chat template (see the module docstring)."""

    template: str
    """The Jinja template in use (the model's, ``student.chat_template``, or the fallback)."""
    template_source: Literal["model", "config", "fallback"]
    system: Literal["native", "folded"]
    """folded: the template rejects (or drops) a system turn, so it is prepended to the first user turn."""
    end_of_turn: str
    """The text an assistant turn ends with, e.g. ``<|eot_id|>``, ``<end_of_turn>``, ``</s>``."""
    end_of_turn_ids: tuple[int, ...]
    """Its token ids: every training target ends with exactly these."""
    stop_ids: tuple[int, ...]
    """Every id that ends a reply in generation."""

    @property
    def template_hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.template.encode()).hexdigest()

    def messages(self, chat: Sequence[dict[str, str]]) -> list[dict[str, str]]:
        """The chat as this template takes it (a system turn folded into the first user turn where needed)."""
        chat = [dict(m) for m in chat]
        if self.system == "native" or not chat or chat[0]["role"] != "system":
            return chat
        system, rest = chat[0]["content"], chat[1:]
        if rest and rest[0]["role"] == "user":
            rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
            return rest
        return [{"role": "user", "content": system}, *rest]

    def prompt_text(self, tokenizer, chat: Sequence[dict[str, str]]) -> str:
        """The text a reply is generated after (the generation prompt included)."""
        return tokenizer.apply_chat_template(
            self.messages(chat), chat_template=self.template, add_generation_prompt=True, tokenize=False
        )

    def prompt_ids(self, tokenizer, chat: Sequence[dict[str, str]]) -> list[int]:
        return tokenizer(self.prompt_text(tokenizer, chat), add_special_tokens=False)["input_ids"]

    def completion_ids(self, tokenizer, reply: str) -> list[int]:
        """The training target: the reply's tokens, then exactly the end-of-turn tokens."""
        return tokenizer(reply, add_special_tokens=False)["input_ids"] + list(self.end_of_turn_ids)

    def encode_sft(self, tokenizer, chat: Sequence[dict[str, str]], reply: str) -> dict[str, list[int]]:
        """``input_ids`` and ``completion_mask`` (1 on the reply and its end-of-turn) for TRL's SFTTrainer."""
        prompt = self.prompt_ids(tokenizer, chat)
        completion = self.completion_ids(tokenizer, reply)
        return {"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)}

    def encode_dpo(self, tokenizer, chat: Sequence[dict[str, str]], chosen: str, rejected: str) -> dict[str, list[int]]:
        """``prompt_ids``, ``chosen_ids``, ``rejected_ids`` for TRL's DPOTrainer; both completions end with the
        end-of-turn."""
        return {
            "prompt_ids": self.prompt_ids(tokenizer, chat),
            "chosen_ids": self.completion_ids(tokenizer, chosen),
            "rejected_ids": self.completion_ids(tokenizer, rejected),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "template_source": self.template_source,
            "system": self.system,
            "end_of_turn": self.end_of_turn,
            "stop_ids": list(self.stop_ids),
            "template_hash": self.template_hash,
        }


def _eos_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def model_stop_ids(tokenizer, generation_config: Any = None) -> list[int]:
    """generation_config's eos ids (an int or a list), then the tokenizer's eos."""
    ids = _eos_list(getattr(generation_config, "eos_token_id", None))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def _render(tokenizer, template: str, chat: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        chat, chat_template=template, add_generation_prompt=add_generation_prompt, tokenize=False
    )


HINT = "set student.chat_template to a template that renders system, user and assistant turns"


def resolve_chat_format(
    tokenizer, generation_config: Any = None, chat_template: str | None = None, model: str = "the student"
) -> ChatFormat:
    """Probes the template on a system + user + assistant chat; see the module docstring.

    Args:
        tokenizer: the student's tokenizer.
        generation_config: the model's ``GenerationConfig`` (its eos list), or None.
        chat_template: ``student.chat_template`` (overrides the model's).
        model: the model's name, for messages.

    Raises:
        ChatTemplateError: no usable template; the message names ``student.chat_template``.
    """
    template, source = _template_of(tokenizer, chat_template, model)
    native = [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": _USER},
        {"role": "assistant", "content": _REPLY},
    ]
    folded = [{"role": "user", "content": f"{_SYSTEM}\n\n{_USER}"}, {"role": "assistant", "content": _REPLY}]
    system: Literal["native", "folded"] = "native"
    try:
        full = _render(tokenizer, template, native, False)
        if _SYSTEM not in full:  # a template that drops the system turn silently
            raise ValueError("the system turn is not rendered")
    except Exception as native_error:  # noqa: BLE001 - any template error means: try without a system turn
        system = "folded"
        try:
            full = _render(tokenizer, template, folded, False)
        except Exception as exc:  # noqa: BLE001 - jinja raises whatever the template says
            raise ChatTemplateError(
                f"student.chat_template: the chat template of {model} fails on a system + user + assistant chat "
                f"({' '.join(str(native_error).split())[:160]}) and with the system folded into the user turn "
                f"({' '.join(str(exc).split())[:160]}); {HINT}"
            ) from None
    chat = native if system == "native" else folded
    prompt = _render(tokenizer, template, chat[:-1], True)
    if not full.startswith(prompt) or _REPLY not in full[len(prompt) :]:
        raise ChatTemplateError(
            f"student.chat_template: the chat template of {model} does not render the prompt with its generation "
            f"prompt as the start of the full chat (prompt ends {prompt[-40:]!r}, full chat {full[-80:]!r}); {HINT}"
        )
    completion = full[len(prompt) :]
    if not completion.lstrip().startswith(_REPLY):
        raise ChatTemplateError(
            f"student.chat_template: the chat template of {model} writes {completion[: completion.find(_REPLY)]!r} "
            f"between the generation prompt and the reply; {HINT}"
        )
    suffix = completion[completion.find(_REPLY) + len(_REPLY) :]
    stops = model_stop_ids(tokenizer, generation_config)
    if source == "fallback":  # a base model may open the next turn instead of ending its own: that ends it too
        stops.extend(i for i in fallback_template(tokenizer)[1] if i not in stops)
    eot_ids = _end_of_turn_ids(tokenizer, suffix, stops, model)
    if eot_ids[-1] not in stops:
        stops.append(int(eot_ids[-1]))
    fmt = ChatFormat(
        template=template,
        template_source=source,
        system=system,
        end_of_turn=tokenizer.decode(eot_ids),
        end_of_turn_ids=tuple(int(i) for i in eot_ids),
        stop_ids=tuple(stops),
    )
    logger.debug("chat format of %s: %s", model, fmt.describe())
    return fmt


def _template_of(tokenizer, chat_template: str | None, model: str) -> tuple[str, str]:
    """(the template, where it came from): the config's, the model's, or the family fallback for a base model."""
    if chat_template:
        return chat_template, "config"
    if tokenizer.chat_template:
        return tokenizer.chat_template, "model"
    if tokenizer.eos_token is None:
        raise ChatTemplateError(
            f"student.chat_template: {model} has no chat template and no eos token to end turns with; "
            "set student.chat_template"
        )
    return fallback_template(tokenizer)[0], "fallback"


def _end_of_turn_ids(tokenizer, suffix: str, stops: list[int], model: str) -> list[int]:
    """The tokens that end an assistant turn: the rendered suffix up to its first stop or special token (what
    follows is the template's layout), without leading whitespace; the eos when the template writes none."""
    special = special_ids(tokenizer)
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    # the end of turn: the suffix up to its first stop or special token (whatever follows is the template's layout)
    end = next((k + 1 for k, t in enumerate(suffix_ids) if t in stops or t in special), None)
    if end is None:  # the template writes no end-of-turn token: the eos ends the reply
        if tokenizer.eos_token_id is None:
            raise ChatTemplateError(
                f"student.chat_template: the chat template of {model} ends an assistant turn with {suffix!r}, no "
                f"special token, and the tokenizer has no eos token; {HINT}"
            )
        return [int(tokenizer.eos_token_id)]
    eot_ids = suffix_ids[:end]
    while (
        eot_ids and eot_ids[0] not in special and eot_ids[0] not in stops and not tokenizer.decode([eot_ids[0]]).strip()
    ):  # whitespace between the reply and the end-of-turn token (a template's layout, not the reply)
        eot_ids = eot_ids[1:]
    return eot_ids


def format_note(fmt: ChatFormat, model: str) -> str | None:
    """The one line a user should see about how their template is used, or None when nothing is unusual."""
    if fmt.system == "folded":
        return (
            f"student {model}: its chat template has no system turn; the system prompt is folded into the first "
            "user turn (set student.chat_template to change that)"
        )
    if fmt.template_source == "fallback":
        return f"student {model}: no chat template; one ending each turn with {fmt.end_of_turn!r} is used"
    return None
