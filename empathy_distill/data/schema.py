"""The normalized dialogue table every reader produces.

One row per (dialogue, response):

==============  ==========================================================
dialogue_id     stable id of the dialogue (from the source file)
emotion         emotion label (ED's 32 labels in the public data), may be null
situation       what happened to the speaker, in their words
utterance       the speaker's turn the response answers
source          who wrote the response: human, chatgpt, llama, gemini, ...
response        the listener's response
rating          human empathy rating 1-3, null where the source has none
split           train or test
==============  ==========================================================

Readers also fill two bookkeeping columns that never reach the output table:
``record`` (the line or record number in the input, for error messages) and
``rating_raw`` (the rating as written, validated before it is converted).
"""

from __future__ import annotations

from typing import Literal, get_args

DIALOGUE_COLUMNS: list[str] = [
    "dialogue_id",
    "emotion",
    "situation",
    "utterance",
    "source",
    "response",
    "rating",
    "split",
]
BOOKKEEPING_COLUMNS: list[str] = ["record", "rating_raw"]

Format = Literal["llms_vs_humans", "empathetic_dialogues", "jsonl", "hf_datasets"]
FORMATS: tuple[str, ...] = get_args(Format)
SPLITS: tuple[str, ...] = ("train", "test")

# The LLMs-vs-Humans file: one row per dialogue, five responses side by side.
LVH_REQUIRED: list[str] = ["dialog_id", "emotion", "situation", "speaker_uttr"]
LVH_RESPONSE_PREFIX = "response_"
LVH_RATING_PREFIX = "rating_"

# The EmpatheticDialogues release CSV: one row per utterance.
ED_REQUIRED: list[str] = ["conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance"]


def source_name(column_suffix: str) -> str:
    """Short source name from an LLMs-vs-Humans column suffix (``chatgpt_empathy`` -> ``chatgpt``)."""
    return column_suffix.removesuffix("_empathy")
