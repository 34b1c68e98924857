"""A persistent reply cache: SQLite in WAL mode, one row per completed request.

Each reply is committed as it arrives, so a killed run loses only the requests
in flight and a rerun sends nothing that already completed. Batch ids are kept
too, so a batch job can be resumed by id.

A cache belongs to one endpoint at a time: rows are stored under the request's key scoped by
the endpoint (base URL, or ``local:<model>``), so another server that serves a model of the
same name never gets this one's replies. A cache written before rows were scoped (no
``meta.format``) is adopted by the first endpoint that opens it: its old rows answer that
endpoint only (one warning says which).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

from empathy_distill.teacher.types import ChatRequest, ChatResult

logger = logging.getLogger(__name__)
FORMAT = "2"
"""2: keys scoped by endpoint."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    k TEXT PRIMARY KEY,
    v TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    keys TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class ReplyCache:
    """Keyed by :attr:`ChatRequest.key` within ``endpoint``; safe to share between threads of one process."""

    def __init__(self, path: str | Path, endpoint: str = "") -> None:
        self.path = Path(path)
        self.endpoint = endpoint
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # a 100k-dialogue run's cache is ~300 MB: with SQLite's default 2 MB page cache a lookup went from 7 to 84 us
        # between 2k and 100k dialogues (bench/scale.py); 64 MB of page cache keeps the key index in memory
        self._db.execute("PRAGMA cache_size=-65536")
        had_rows = (
            self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='replies'").fetchone() is not None
            and self._db.execute("SELECT 1 FROM replies LIMIT 1").fetchone() is not None
        )
        self._db.executescript(_SCHEMA)
        meta = dict(self._db.execute("SELECT k, v FROM meta").fetchall())
        if "format" not in meta:
            if had_rows:  # written before keys were scoped: adopted by this endpoint, once
                self._db.execute("INSERT INTO meta VALUES ('legacy_endpoint', ?)", (endpoint,))
                meta["legacy_endpoint"] = endpoint
                logger.warning(
                    "reply cache %s predates per-endpoint keys: its replies now answer %s only",
                    self.path,
                    endpoint or "(no endpoint named)",
                )
            self._db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
        self._legacy = meta.get("legacy_endpoint") == endpoint and "legacy_endpoint" in meta

    def _scoped(self, key: str) -> str:
        return hashlib.sha256(f"{self.endpoint}\0{key}".encode()).hexdigest()

    def _row(self, key: str):
        query = "SELECT text, prompt_tokens, completion_tokens FROM replies WHERE key=?"
        with self._lock:
            row = self._db.execute(query, (self._scoped(key),)).fetchone()
            if row is None and self._legacy:
                row = self._db.execute(query, (key,)).fetchone()
        return row

    def get(self, key: str) -> ChatResult | None:
        row = self._row(key)
        if row is None:
            return None
        return ChatResult(key=key, text=row[0], prompt_tokens=row[1], completion_tokens=row[2], cached=True)

    def put(self, request: ChatRequest, result: ChatResult) -> None:
        """Stores a completed reply (errors are never cached)."""
        if result.error is not None:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    self._scoped(request.key),
                    request.model,
                    json.dumps(request.messages),
                    result.text,
                    result.prompt_tokens,
                    result.completion_tokens,
                    time.time(),
                ),
            )

    def __contains__(self, key: str) -> bool:
        return self._row(key) is not None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def record_batch(self, batch_id: str, keys: list[str], status: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?) ON CONFLICT(batch_id) DO UPDATE SET status=excluded.status",
                (batch_id, json.dumps(keys), status, time.time()),
            )

    def open_batches(self) -> list[tuple[str, list[str]]]:
        """Batches submitted but not yet merged (to resume by id)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT batch_id, keys FROM batches WHERE status NOT IN ('merged', 'failed', 'expired', 'cancelled') "
                "ORDER BY created"
            ).fetchall()
        return [(bid, json.loads(keys)) for bid, keys in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
