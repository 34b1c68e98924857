"""The student factory: a Hugging Face model (id or folder) or the offline ``tiny`` student.

``tiny`` is built here with no download: a byte-level BPE tokenizer and a small Llama,
briefly pretrained as a causal LM so that its replies are word-like, both on the
warm-up corpus of :mod:`empathy_distill.training.warmup` (situations and speaker turns
of train dialogues, and model replies rated below the top unless ``warmup_replies: none``;
never a human reply, a training target or a test dialogue),
so that the base is untouched by what SFT and DPO teach. It is saved as a
normal model folder under ``student.cache_dir`` and reused while the data hash and
the settings are unchanged. It can show that the pipeline trains, changes adapters,
moves DPO rewards and generates; it cannot show real empathy gains (it is a few
hundred thousand parameters).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from empathy_distill.config import StudentConfig, TinyStudentConfig
from empathy_distill.training.chat import FALLBACK_CHAT_TEMPLATE, ChatFormat, format_note, resolve_chat_format
from empathy_distill.training.sources import quiet_progress

logger = logging.getLogger(__name__)

# The tiny student's template is the fallback one: role tags, every turn ended by its eos token.
DEFAULT_CHAT_TEMPLATE = FALLBACK_CHAT_TEMPLATE
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]


def tiny_key(texts_hash: str, cfg: TinyStudentConfig) -> str:
    payload = json.dumps(
        {"data": texts_hash, "cfg": cfg.model_dump(), "template": DEFAULT_CHAT_TEMPLATE, "v": 3}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def corpus_hash(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in sorted(texts):
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def train_tokenizer(texts: list[str], max_vocab: int):
    """Byte-level BPE on the texts; the vocabulary stops growing when merges run out."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max_vocab,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=sys.stderr.isatty(),  # its bars write bare newlines into logs
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL_TOKENS[4:],
    )
    fast.chat_template = DEFAULT_CHAT_TEMPLATE
    return fast


def pretrain(model, tokenizer, texts: list[str], cfg: TinyStudentConfig) -> list[float]:
    """A short causal-LM warm-up on the warm-up chats (chat-formatted, so roles are learnt too)."""
    import torch

    torch.manual_seed(cfg.seed)
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    data = torch.tensor(ids, dtype=torch.long)
    seq = min(cfg.pretrain_seq, max(8, len(data) // 4))
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / max(cfg.pretrain_steps, 1)))
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    model.train()
    for _ in range(cfg.pretrain_steps):
        starts = torch.randint(0, max(len(data) - seq - 1, 1), (cfg.pretrain_batch,), generator=gen)
        batch = torch.stack([data[s : s + seq] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


def prepare_tiny_student(dialogues, training_sets, cfg: StudentConfig) -> tuple[Path, dict[str, Any]]:
    """The untouched tiny base for this data: warm-up corpus built, then the student built or reused.

    Args:
        dialogues: the validated long table.
        training_sets: SFT rows and DPO pairs whose targets the base must never read.
        cfg: student settings.

    Returns:
        The model folder and facts about it, including what the warm-up read and dropped.
    """
    # import-time: empathy_distill.training.warmup 0.8 s to import (empathy_distill.training.student alone 0.3 s)
    from empathy_distill.training.warmup import build_warmup_corpus

    corpus = build_warmup_corpus(dialogues, training_sets, include_replies=cfg.tiny.warmup_replies == "below_top")
    if not corpus.chats:
        raise ValueError(
            "the tiny student has no warm-up text: no train dialogue has a situation or speaker turn left after "
            "exclusions"
        )
    folder, info = build_tiny_student(corpus.units, corpus.chats, cfg)
    return folder, {
        **info,
        "warmup_chats": len(corpus.chats),
        "warmup_units_dropped": corpus.dropped,
        "warmup_excluded_texts": corpus.excluded_texts,
    }


def build_tiny_student(texts: list[str], chats: list[str], cfg: StudentConfig) -> tuple[Path, dict[str, Any]]:
    """Builds (or reuses) the tiny student for these texts.

    Args:
        texts: plain warm-up text for the tokenizer.
        chats: chat-formatted warm-up text.
        cfg: student settings (``cfg.tiny`` and ``cfg.cache_dir``).

    Returns:
        The model folder and facts about it (vocab, parameters, warm-up loss, seconds, reused).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    key = tiny_key(corpus_hash(texts + chats), cfg.tiny)
    folder = Path(cfg.cache_dir) / f"tiny-{key}"
    info_path = folder / "student_info.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        return folder, {**info, "reused": True}
    start = time.perf_counter()
    tiny = cfg.tiny
    tokenizer = train_tokenizer(texts + chats, tiny.max_vocab)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.hidden_size * 2,
        num_hidden_layers=tiny.layers,
        num_attention_heads=tiny.heads,
        num_key_value_heads=tiny.heads,
        max_position_embeddings=tiny.max_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(tiny.seed)
    model = LlamaForCausalLM(config)
    losses = pretrain(model, tokenizer, chats, tiny)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    info = {
        "model": "tiny",
        "key": key,
        "vocab_size": len(tokenizer),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "pretrain_steps": tiny.pretrain_steps,
        "pretrain_loss_first": losses[0] if losses else None,
        "pretrain_loss_last": losses[-1] if losses else None,
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    (tmp / "student_info.json").write_text(json.dumps(info, indent=2))
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    logger.info("built tiny student %s: %s", folder, info)
    return folder, {**info, "reused": False}


def resolve_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def student_chat_format(tokenizer, generation_config, cfg: StudentConfig, name: str) -> ChatFormat:
    """The probed chat format (see :mod:`empathy_distill.training.chat`); the tokenizer is set to use its template."""
    fmt = resolve_chat_format(tokenizer, generation_config, cfg.chat_template, model=name)
    tokenizer.chat_template = fmt.template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return fmt


_NOTED: set[str] = set()


def note_chat_format(fmt: ChatFormat, name: str) -> None:
    """Says once per process how an unusual template is used (folded system turn, fallback template)."""
    note = format_note(fmt, name)
    if note and note not in _NOTED:
        _NOTED.add(note)
        logger.warning(note)


def load_student(path: str, cfg: StudentConfig) -> tuple[Any, Any, ChatFormat]:
    """Tokenizer, model and chat format from a folder or hub id.

    Hub ids are only fetched when the process is allowed to (``HF_HUB_OFFLINE`` unset);
    tests and the demo use the tiny student's local folder.

    Raises:
        ChatTemplateError: the template cannot render a system + user + assistant chat, even folded.
    """
    from transformers import AutoModelForCausalLM

    quiet_progress()
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(cfg.dtype))
    fmt = student_chat_format(tokenizer, model.generation_config, cfg, path)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model, fmt
