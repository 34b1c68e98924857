"""Checks that run before a pipeline starts, so that a mistake costs one clear line, not a teacher bill.

A data path that is a folder or cannot be read, a model (student, local teacher, local judge)
that cannot be loaded from here, and a student chat template that cannot render a training row
are found now, before any teacher call or training, with the config key that names them.
"""

from __future__ import annotations

import os
from pathlib import Path

from empathy_distill.config import DistillConfig, StudentConfig
from empathy_distill.errors import ConfigError
from empathy_distill.prompts import STUDENT_SYSTEM, load_template
from empathy_distill.training.chat import ChatFormat, ChatTemplateError
from empathy_distill.training.sources import PRESETS, is_gguf_name, resolve_student
from empathy_distill.training.student import load_tokenizer, note_chat_format, student_chat_format


def check_run(config: DistillConfig, needs_teacher: bool, needs_student: bool = True) -> None:
    """Every check a run needs; raises InputError or ConfigError naming the file or the key."""

    # import-time: empathy_distill.data.readers loads pandas (0.35 s for every CLI command; preflight alone 0.1 s)
    from empathy_distill.data.readers import check_source

    check_source(Path(config.data.path), config.data.format)
    if needs_student:
        check_model_source(config.student.model, "student.model")
        check_student_template(config.student)
    if needs_teacher and config.teacher.backend == "local":
        check_model_source(config.teacher.model, "teacher.model")
    for i, judge in enumerate(config.evaluation.judges):
        if judge.kind == "llm" and judge.endpoint is not None and judge.endpoint.backend == "local":
            check_model_source(judge.endpoint.model, f"evaluation.judges[{i}].endpoint.model")


def check_student_template(student: StudentConfig) -> ChatFormat | None:
    """Renders the student's chat template on a chat shaped like every training row (the student's system prompt,
    a user turn, an assistant reply) before any work; says once when the system turn is folded or the fallback
    template is used.

    Raises:
        ChatTemplateError: the template fails even with the system turn folded (the message names
            ``student.chat_template``).
    """
    if student.model == "tiny":  # built here with the project's own template
        return None
    if is_gguf_name(student.model):  # the dequantised folder (built now, once, or reused): the tokenizer to check
        folder, _ = resolve_student(student.model, student.cache_dir)
        student = student.model_copy(update={"model": folder})

    try:
        tokenizer = load_tokenizer(student.model)
    except Exception as exc:  # noqa: BLE001 - a folder with config.json but no usable tokenizer
        raise ConfigError(
            f"student.model '{student.model}': cannot load its tokenizer ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]})"
        ) from None
    try:
        from transformers import GenerationConfig

        generation_config = GenerationConfig.from_pretrained(student.model)
    except Exception:  # noqa: BLE001 - no generation_config.json: the tokenizer's eos alone
        generation_config = None
    try:
        fmt = student_chat_format(tokenizer, generation_config, student, student.model)
        system = load_template(STUDENT_SYSTEM)
        chat = [{"role": "system", "content": system}, {"role": "user", "content": "I lost my keys again today."}]
        fmt.encode_sft(tokenizer, chat, "That sounds frustrating. Do you want help retracing your steps?")
    except ChatTemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - the template renders the probe but not a real row
        raise ChatTemplateError(
            f"student.chat_template: the chat template of {student.model} fails on a training row "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); set student.chat_template"
        ) from None
    note_chat_format(fmt, student.model)
    return fmt


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_model_source(name: str, key: str) -> None:
    """Raises :class:`ConfigError` when ``name`` (a model folder or a Hugging Face hub id) cannot be loaded here.

    ``tiny`` is built locally. A preset (its package is checked when the student is prepared) or a ``.gguf`` file
    that exists is a GGUF source. A folder must exist and hold ``config.json``. A hub id must be in the local
    Hugging Face cache, or (unless ``HF_HUB_OFFLINE`` is set) answer on the hub.
    """
    if name == "tiny":
        return
    path = Path(name).expanduser()
    if is_gguf_name(name):
        if name not in PRESETS and not path.is_file():
            raise ConfigError(f"{key} '{name}': no such GGUF file")
        return
    if name.startswith(("/", ".", "~")) or path.exists():
        if not path.is_dir():
            raise ConfigError(f"{key} '{name}': no such folder")
        if not (path / "config.json").is_file():
            raise ConfigError(f"{key} '{name}': the folder has no config.json (not a transformers model folder)")
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if _offline():
        raise ConfigError(
            f"{key} '{name}': not in the local Hugging Face cache and HF_HUB_OFFLINE is set "
            f"(download it first: hf download {name}; or give a local folder)"
        )
    from huggingface_hub import model_info

    try:
        model_info(name, timeout=10)
    except Exception as exc:  # no network, no such repo, a private repo without a token: all say the same to a user
        detail = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"{key} '{name}': cannot be loaded from the Hugging Face hub ({type(exc).__name__}: {detail})"
        ) from None
