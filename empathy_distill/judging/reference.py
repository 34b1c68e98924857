"""The reference judge: which reply is closer to this dialogue's own top-rated replies than to its low-rated ones.

A second offline judge that shares nothing fitted with the scorer: no head, no training
ratings. For each test dialogue it reads the recorded replies and their human ratings, and
scores a reply by its mean cosine similarity (MiniLM-L6, mean-pooled last layer) to the
replies rated highest in that dialogue minus its mean similarity to those rated lowest. The
higher score wins; a difference within ``margin`` is a tie, and so is every comparison on a
dialogue whose recorded replies are all rated alike (nothing to tell them apart by).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from empathy_distill.data.training_sets import user_turn
from empathy_distill.judging.scorer import Encoder

DEFAULT_MARGIN = 0.01


@dataclass
class ReferenceJudge:
    """Pairwise verdicts from similarity to each dialogue's top- minus low-rated recorded replies."""

    references: dict[str, tuple[list[str], list[str]]]
    """context -> (top-rated replies, low-rated replies)."""
    name: str = "reference"
    margin: float = DEFAULT_MARGIN
    encoder: Encoder = field(default_factory=Encoder)

    @classmethod
    def from_dialogues(cls, dialogues: pd.DataFrame, **kwargs) -> ReferenceJudge:
        """References from the rated recorded replies of every dialogue (a test dialogue is judged by its own)."""
        rated = dialogues[dialogues["rating"].notna() & dialogues["response"].notna()]
        refs: dict[str, tuple[list[str], list[str]]] = {}
        for (situation, utterance), group in rated.groupby(["situation", "utterance"], sort=False):
            ratings = group["rating"].astype(float)
            if ratings.max() == ratings.min():
                continue
            top = list(group.loc[ratings == ratings.max(), "response"].astype(str))
            low = list(group.loc[ratings == ratings.min(), "response"].astype(str))
            refs[user_turn(str(situation), str(utterance))] = (top, low)
        return cls(refs, **kwargs)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        return self.encoder(texts)[:, -1, :]

    def scores(self, contexts: list[str], replies: list[str]) -> np.ndarray:
        """Top-minus-low similarity per reply (NaN where the dialogue has no rated contrast)."""
        known = [c in self.references for c in contexts]
        ref_texts = sorted({t for c in contexts if c in self.references for side in self.references[c] for t in side})
        vectors = dict(zip(ref_texts, self._vectors(ref_texts))) if ref_texts else {}
        reply_vecs = self._vectors([r if r.strip() else " " for r in replies]) if replies else np.zeros((0, 384))
        out = np.full(len(replies), np.nan)
        for i, (context, ok) in enumerate(zip(contexts, known)):
            if not ok or not replies[i].strip():
                continue
            top, low = self.references[context]
            v = reply_vecs[i]
            out[i] = float(np.mean([vectors[t] @ v for t in top]) - np.mean([vectors[t] @ v for t in low]))
        return out

    def verdicts(self, situations, utterances, first, second):
        contexts = [user_turn(s, u) for s, u in zip(situations, utterances)]
        a, b = self.scores(contexts, list(first)), self.scores(contexts, list(second))
        out: list[str | None] = []
        for x, y, context in zip(a, b, contexts):
            if context not in self.references:
                out.append("tie")  # all recorded replies rated alike: no contrast to judge by
            elif np.isnan(x) and np.isnan(y):
                out.append("tie")  # both empty
            elif np.isnan(x) or np.isnan(y):
                out.append("B" if np.isnan(x) else "A")  # an empty reply loses to any reply
            elif abs(x - y) <= self.margin:
                out.append("tie")
            else:
                out.append("A" if x > y else "B")
        return out
