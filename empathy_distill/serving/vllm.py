"""The ``vllm serve`` command for what the registry's aliases name: the GPU path from the same registry truth.

Our server (:mod:`deploy.server`) holds each registered version as a PEFT adapter on one base;
vLLM does the same with ``--enable-lora``. This module turns downloaded versions into that
command: the base (the bundled copy, or the reference the version was trained on), one
``--lora-modules NAME=PATH`` per alias, ``--max-lora-rank`` from the adapters' registered rank
rounded up to a value vLLM accepts, the registered chat template where the version overrides
the base's, the registered generation defaults, and the dtype. Pure: it reads files, runs nothing.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM's ``--max-lora-rank`` accepts."""

GENERATION_KEYS = ("temperature", "top_p", "max_new_tokens")
"""Registered generation settings vLLM's ``--override-generation-config`` takes (no_repeat_ngram_size has no
vLLM counterpart)."""


class VllmError(ValueError):
    """A version vLLM cannot serve as registered; the message says which and why."""


@dataclass(frozen=True)
class LoraModule:
    """One alias's version as vLLM will load it."""

    name: str
    """What clients send as ``model``: champion or challenger."""
    version: str
    adapter: str
    """The adapter folder (adapter_config.json, adapter_model.safetensors)."""
    rank: int
    """The largest LoRA rank in the adapter (``r`` and any ``rank_pattern`` entry)."""
    base: str
    """The base folder or hub id."""
    base_key: str
    """What identifies the base (its content fingerprint): versions on one vLLM server share it."""


def adapter_rank(adapter_dir: str | Path) -> int:
    """The largest rank in a PEFT LoRA adapter's ``adapter_config.json``.

    Raises:
        VllmError: no LoRA config there, or a LoRA kind vLLM does not serve (DoRA).
    """
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VllmError(f"{path}: not a readable PEFT adapter config ({exc})") from None
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise VllmError(f"{path}: peft_type {config.get('peft_type')} is not LoRA; vLLM serves LoRA adapters only")
    if config.get("use_dora"):
        raise VllmError(f"{path}: a DoRA adapter (use_dora: true); vLLM serves plain LoRA only")
    ranks = [int(config.get("r", 0)), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def max_lora_rank(ranks: Iterable[int]) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds every rank."""
    top = max(ranks)
    for allowed in LORA_RANKS:
        if top <= allowed:
            return allowed
    raise VllmError(f"LoRA rank {top} is above the largest --max-lora-rank vLLM accepts ({LORA_RANKS[-1]})")


def has_chat_template(base: str | Path) -> bool | None:
    """Whether a local base folder carries a chat template (None for a hub id: not known offline)."""
    folder = Path(base)
    if not folder.is_dir():
        return None
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def serve_argv(
    modules: Sequence[LoraModule],
    *,
    served_name: str,
    host: str = "0.0.0.0",
    port: int = 8000,
    dtype: str = "auto",
    chat_template_file: str | None = None,
    generation: dict[str, Any] | None = None,
) -> list[str]:
    """``vllm serve`` with every module on their one base.

    Raises:
        VllmError: no module, or modules on different bases (one vLLM server holds one base).
    """
    if not modules:
        raise VllmError("nothing to serve: no alias names a version")
    bases = {m.base_key for m in modules}
    if len(bases) > 1:
        raise VllmError(
            "the versions sit on different bases ("
            + ", ".join(f"{m.name} v{m.version}: {m.base}" for m in modules)
            + "); one vLLM server holds one base"
        )
    argv = ["vllm", "serve", modules[0].base, "--served-model-name", served_name, "--host", host, "--port", str(port)]
    argv += ["--dtype", dtype, "--enable-lora", "--max-loras", str(len(modules))]
    argv += ["--max-lora-rank", str(max_lora_rank(m.rank for m in modules))]
    argv += ["--lora-modules", *(f"{m.name}={m.adapter}" for m in modules)]
    if chat_template_file:
        argv += ["--chat-template", chat_template_file]
    overrides = {k: (generation or {})[k] for k in GENERATION_KEYS if (generation or {}).get(k) is not None}
    if overrides:
        argv += ["--override-generation-config", json.dumps(overrides, sort_keys=True)]
    return argv


def render(argv: Sequence[str]) -> str:
    """The command as one shell line, each option on its own continued line."""
    parts, line = [], [shlex.quote(argv[0]), shlex.quote(argv[1]), shlex.quote(argv[2])]
    for token in argv[3:]:
        if token.startswith("--"):
            parts.append(" ".join(line))
            line = [token]
        else:
            line.append(shlex.quote(token))
    parts.append(" ".join(line))
    return " \\\n  ".join(parts)
