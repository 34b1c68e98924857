"""A persistent reply cache: SQLite in WAL mode, one row per completed request.

Each reply is committed as it arrives, so a killed run loses only the requests
in flight and a rerun sends nothing that already completed. Batch ids are kept
too, so a batch job can be resumed by id.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from empathy_distill.teacher.types import ChatRequest, ChatResult

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
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    keys TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class ReplyCache:
    """Keyed by :attr:`ChatRequest.key`; safe to share between threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, key: str) -> ChatResult | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens FROM replies WHERE key=?", (key,)
            ).fetchone()
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
                    request.key,
                    request.model,
                    json.dumps(request.messages),
                    result.text,
                    result.prompt_tokens,
                    result.completion_tokens,
                    time.time(),
                ),
            )

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM replies WHERE key=?", (key,)).fetchone() is not None

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
