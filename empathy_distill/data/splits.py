"""Train/test splits that are reproducible and leave no dialogue on both sides.

``paper``: the rule of Xie et al. (2025) on the LLMs-vs-Humans file: a dialogue is
test when fewer than two of its responses are rated 3 (250 of 2,000 dialogues).
``hash``: a stable split by a salted hash of ``dialogue_id``; adding or removing
other dialogues never moves one.
``auto``: ``paper`` when every dialogue has at least two rated responses, else ``hash``.
A split given in the input (JSONL ``split`` field, a DatasetDict's split names) wins.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import pandas as pd

SplitMethod = Literal["auto", "paper", "hash"]


def hash_fraction(dialogue_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the id and the seed."""
    digest = hashlib.sha256(f"{seed}:{dialogue_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def paper_test_ids(table: pd.DataFrame) -> set[str]:
    """Dialogues with fewer than two responses rated 3."""
    top = table.assign(top=table["rating"].eq(3).fillna(False)).groupby("dialogue_id")["top"].sum()
    return set(top[top < 2].index)


def resolve_method(table: pd.DataFrame, method: SplitMethod) -> Literal["paper", "hash"]:
    """``auto`` becomes ``paper`` when every dialogue has two or more rated responses."""
    if method != "auto":
        return method
    if table.empty:
        return "hash"
    rated = table["rating"].notna().groupby(table["dialogue_id"]).sum()
    return "paper" if bool((rated >= 2).all()) else "hash"


def assign_splits(
    table: pd.DataFrame, method: SplitMethod = "auto", test_fraction: float = 0.125, seed: int = 0
) -> tuple[pd.Series, str]:
    """Split per row (constant within a dialogue), and the method that decided it.

    Args:
        table: long table with ``dialogue_id``, ``rating`` (nullable) and ``split``
            (given by the input or null).
        method: ``auto``, ``paper`` or ``hash``.
        test_fraction: share of dialogues sent to test by ``hash``.
        seed: salt of the hash split.

    Returns:
        The split column and a label such as ``paper``, ``hash`` or ``given``.
    """
    given = table["split"].where(table["split"].isin(["train", "test"]))
    need = given.isna()
    if not need.any():
        return given.astype("string"), "given"
    rest = table[need]
    used = resolve_method(rest, method)
    if used == "paper":
        test_ids = paper_test_ids(rest)
        computed = rest["dialogue_id"].map(lambda d: "test" if d in test_ids else "train")
    else:
        computed = rest["dialogue_id"].map(lambda d: "test" if hash_fraction(d, seed) < test_fraction else "train")
    split = given.copy().astype("object")
    split[need] = computed
    label = used if need.all() else f"given+{used}"
    return split.astype("string"), label


def dev_split(table: pd.DataFrame, dialogues: int, seed: int = 0) -> pd.DataFrame:
    """The table for choosing settings without the test split: every test dialogue dropped, and ``dialogues`` train
    dialogues (the lowest salted hashes: stable, whatever else the file holds) relabelled ``test``, so that the same
    code trains on the rest and evaluates on them.

    The paper's test split holds the dialogues with fewer than two top-rated replies; a dev set carved from train
    holds dialogues with two or more, so its figures estimate the settings' effect, not the test figures.

    Raises:
        ValueError: fewer train dialogues than ``dialogues`` plus one.
    """
    train = table[table["split"] == "train"]
    ids = sorted(train["dialogue_id"].unique(), key=lambda d: hash_fraction(str(d), seed))
    if len(ids) <= dialogues:
        raise ValueError(f"dev split: {dialogues} dev dialogues asked of {len(ids)} train dialogues")
    dev = set(ids[:dialogues])
    out = train.copy()
    out["split"] = out["dialogue_id"].map(lambda d: "test" if d in dev else "train").astype("string")
    return out.reset_index(drop=True)
