"""The tiny student's warm-up corpus: what the untouched base is allowed to have read.

"Tuned vs base" only measures the tuning if the base never saw what the tuning
teaches. The warm-up therefore reads train dialogues only, and from them:

- the situation and the speaker's turn (as a user turn and the reply to it);
- recorded model replies rated below the top rating (``rating < 3``), as listener turns:
  a base that has seen mediocre replies, as any pretrained model has, but never a
  reply that any method trains on (direct trains on model replies rated 3 and rejects
  human replies; the improvement methods train on teacher rewrites and reject human
  replies or the teacher's first drafts).

Never in it: any human reply, any reply rated 3, any SFT target, DPO chosen or
rejected reply of the given training sets, any text of a test dialogue. A unit that
equals an excluded text, or contains an excluded text of ``min_substring_words``
words or more, is dropped whole.
"""

from __future__ import annotations

import bisect
import functools
import gc
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

from empathy_distill.data.training_sets import user_turn

_SPACE = re.compile(r"\s+")
MIN_SUBSTRING_WORDS = 4
TOP_RATING = 3


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form used for every comparison here."""
    return _SPACE.sub(" ", str(text)).strip().lower()


@dataclass
class WarmupCorpus:
    """Chat-formatted warm-up texts, the plain units behind them, and what was dropped."""

    chats: list[str]
    units: list[str]
    dropped: int = 0
    excluded_texts: int = 0
    sources: dict[str, int] = field(default_factory=dict)


def excluded_texts(dialogues: pd.DataFrame, training_sets: Iterable[pd.DataFrame] = ()) -> set[str]:
    """Every text the base must not read: human and top-rated replies, test-dialogue text, training targets."""
    responses = dialogues[(dialogues["source"] == "human") | ~(dialogues["rating"].fillna(TOP_RATING) < TOP_RATING)]
    out: set[str] = set(responses["response"].dropna().map(normalize))
    test = dialogues[dialogues["split"] == "test"]
    for column in ("situation", "utterance", "response"):
        out.update(test[column].dropna().map(normalize))
    for frame in training_sets:
        for column in ("response", "chosen", "rejected"):
            if column in frame.columns:
                out.update(frame[column].dropna().map(normalize))
    out.discard("")
    return out


def _containing(units: list[str], needles: Iterable[str]) -> set[int]:
    """Indices of units that contain any needle as a substring (texts normalized, needles of 4 words or more).

    A needle found inside a unit has its interior words (all but its first and last, which may be cut
    mid-word) as whole, consecutive words of the unit, so every interior word pair of the needle is a
    word pair of that unit. The units' word pairs are counted once; a needle with an interior pair no
    unit has is passed over at that pair (most needles: the search finds a few dozen in a million),
    any other is filed under its pair that the fewest units have, and each unit confirms the needles
    filed under its own pairs with ``in``. The work grows with the number of words, not units x
    needles (the plain search over every needle ran in quadratic time: 4.4 times the cost per dialogue
    at 10,000 dialogues as at 2,000; counting the needles' pairs instead of the units' cost 1.5 times
    the cost per dialogue at 100,000 as at 2,000, and 3 times this at both)."""
    from collections import Counter, defaultdict

    unit_pairs = [set(zip(words, words[1:])) for words in (unit.split(" ") for unit in units)]
    units_with = Counter(pair for pairs in unit_pairs for pair in pairs).get
    filed: dict[tuple[str, str], list[str]] = defaultdict(list)
    short = []
    for needle in set(needles):
        words = needle.split(" ")
        if len(words) < 4:  # no interior pair (a min_substring_words below 4): searched in full, as before
            short.append(needle)
            continue
        rarest, fewest = None, 0
        for pair in zip(words[1:-2], words[2:-1]):
            n = units_with(pair, 0)
            if n == 0:
                break
            if rarest is None or n < fewest:
                rarest, fewest = pair, n
        else:
            filed[rarest].append(needle)
    hit = _searched(units, short)
    for i, (unit, pairs) in enumerate(zip(units, unit_pairs)):
        if i not in hit and any(pair in filed and any(n in unit for n in filed[pair]) for pair in pairs):
            hit.add(i)
    return hit


def _searched(units: list[str], needles: list[str]) -> set[int]:
    """Indices of units that contain any needle: one search per needle over the joined units."""
    if not needles:
        return set()
    joined = "\n".join(units)
    starts, pos = [], 0
    for unit in units:
        starts.append(pos)
        pos += len(unit) + 1
    hit: set[int] = set()
    for needle in needles:
        at = joined.find(needle)
        while at != -1:
            hit.add(bisect.bisect_right(starts, at) - 1)
            at = joined.find(needle, at + 1)
    return hit


def _gc_paused(fn: Callable) -> Callable:
    """Run ``fn`` with the cyclic garbage collector off (and back on after, if it was on).

    The search builds millions of word-pair tuples that hold no cycles; each collection the
    collector triggers on them walks every object still alive, which made the cost per dialogue
    grow with the corpus (1.37 times at 100,000 dialogues as at 2,000 with it on, 1.19 off)."""

    @functools.wraps(fn)
    def paused(*args, **kwargs):
        was_on = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_on:
                gc.enable()

    return paused


@_gc_paused
def build_warmup_corpus(
    dialogues: pd.DataFrame,
    training_sets: Iterable[pd.DataFrame] = (),
    min_substring_words: int = MIN_SUBSTRING_WORDS,
    include_replies: bool = True,
) -> WarmupCorpus:
    """The warm-up chats from train dialogues, minus anything excluded.

    Args:
        dialogues: the validated long table (``split``, ``situation``, ``utterance``, ``source``,
            ``response``, ``rating``).
        training_sets: SFT rows and DPO pairs; their targets are excluded too (teacher rewrites
            are not in ``dialogues``).
        min_substring_words: excluded texts this long or longer are also searched inside units.
        include_replies: include recorded model replies rated below the top rating (``student.tiny.warmup_replies``);
            False: situations and speaker turns only.
    """

    train = dialogues[dialogues["split"] == "train"]
    contexts = train.drop_duplicates("dialogue_id")
    replies = train[(train["source"] != "human") & (train["rating"].fillna(TOP_RATING) < TOP_RATING)]
    if not include_replies:
        replies = replies.iloc[:0]
    excluded = excluded_texts(dialogues, training_sets)
    long_excluded = [t for t in excluded if len(t.split()) >= min_substring_words]
    candidates = [*contexts["situation"], *contexts["utterance"], *replies["response"]]
    norm_units = list({normalize(x) for x in candidates} - {""})
    bad = {norm_units[i] for i in _containing(norm_units, long_excluded)} | (set(norm_units) & excluded)

    def ok(text: str) -> bool:
        norm = normalize(text)
        return bool(norm) and norm not in bad

    chats, units, dropped = [], [], 0
    for situation, utterance in zip(contexts["situation"], contexts["utterance"]):
        situation, utterance = str(situation).strip(), str(utterance).strip()
        keep_s, keep_u = ok(situation), ok(utterance)
        dropped += (not keep_s) + (not keep_u)
        if keep_s and keep_u and normalize(situation) != normalize(utterance):
            chats.append(chat(situation, utterance))
            units += [situation, utterance]
        elif keep_s or keep_u:  # one side only: plain text, still useful for words
            text = situation if keep_s else utterance
            chats.append(f"<|user|>\n{text}</s>\n")
            units.append(text)
    n_replies = 0
    for situation, utterance, reply in zip(replies["situation"], replies["utterance"], replies["response"]):
        if not ok(reply):
            dropped += 1
            continue
        prompt = user_turn(situation, utterance)
        context_ok = ok(str(situation)) and ok(str(utterance))
        chats.append(chat(prompt, reply) if context_ok else f"<|assistant|>\n{reply.strip()}</s>\n")
        units.append(reply.strip())
        n_replies += 1
    return WarmupCorpus(
        chats=chats,
        units=units,
        dropped=dropped,
        excluded_texts=len(excluded),
        sources={"train_dialogues": len(contexts), "replies_rated_below_top": n_replies, "chats": len(chats)},
    )


def chat(user: str, assistant: str) -> str:
    """One warm-up chat in the student's template (no system turn: repeated in every chat it would be echoed)."""
    return f"<|user|>\n{user}</s>\n<|assistant|>\n{assistant.strip()}</s>\n"
