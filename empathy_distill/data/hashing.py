"""Content hashes for lineage: same rows in any order give the same hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from empathy_distill.data.schema import DIALOGUE_COLUMNS


def _canonical(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def data_hash(table: pd.DataFrame) -> str:
    """sha256 over the sorted hashes of each normalized row (order-independent).

    Only the columns of the normalized schema count, so bookkeeping such as line
    numbers never changes the hash.
    """
    row_hashes = sorted(
        hashlib.sha256(
            json.dumps([_canonical(v) for v in row], ensure_ascii=True, separators=(",", ":")).encode()
        ).hexdigest()
        for row in table[DIALOGUE_COLUMNS].itertuples(index=False, name=None)
    )
    outer = hashlib.sha256()
    for h in row_hashes:
        outer.update(h.encode())
    return "sha256:" + outer.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes, or of every file under a folder (names included).

    Used as a step parameter so that ZenML's cache sees a changed input file.
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        try:
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            digest.update(b"<unreadable>")
    return "sha256:" + digest.hexdigest()


def table_digest(table: pd.DataFrame) -> str:
    """sha256 over every column of a table, rows in any order (training sets have other columns than dialogues)."""
    rows = sorted(
        hashlib.sha256(
            json.dumps([_canonical(v) for v in row], ensure_ascii=True, default=str, separators=(",", ":")).encode()
        ).hexdigest()
        for row in table[sorted(table.columns)].itertuples(index=False, name=None)
    )
    outer = hashlib.sha256(",".join(sorted(table.columns)).encode())
    for h in rows:
        outer.update(h.encode())
    return "sha256:" + outer.hexdigest()
