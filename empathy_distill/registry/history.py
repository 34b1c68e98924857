"""The promotion history: every decision on ``champion``, in order (SQLite beside a local store, or a PostgreSQL
table every promoter reaches), and the checks read from it (the holders in order, the chain of moves).

MLflow aliases keep no history of their own; these entries are it. An entry is a dict: ``seq``, ``model``,
``version``, ``action``, ``decision``, ``promoted``, ``previous``, ``champion_after``, ``status`` (pending, done,
aborted, stale), ``reasons``, ``time``, ``actor``.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict

from empathy_distill.errors import ConfigError
from empathy_distill.registry.aliases import holder_label, version_label
from empathy_distill.tracking import masked_url

GATE_HEADING = "**Promotion decisions**"
"""The heading in a version's description under which every decision about it is appended."""


class PromotionDecision(BaseModel):
    """One entry of the history as a value: what a gate, a promotion or a rollback decided (the ``promotion_decision``
    artifact of a run)."""

    model_config = ConfigDict(extra="ignore")

    seq: int
    model: str
    version: str | None
    action: str
    """gate, manual, forced, rollback or reconcile."""
    promoted: bool
    decision: str
    previous: str | None
    """The champion before the decision."""
    champion_after: str | None
    reasons: list[str] = []
    """Why not (or, when forced, why the gate was overridden)."""
    figures: dict[str, Any] = {}
    """The gate's checks, its rules in force and the judges it counted or refused."""
    actor: str = ""
    time: str = ""
    status: str = "done"
    repaired: list[str] = []

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> PromotionDecision:
        return cls.model_validate(entry)


class PromotionHistory(Protocol):
    def append(self, entry: dict[str, Any]) -> int: ...
    def set_status(self, seq: int, status: str, note: str = "") -> None: ...
    def entries(self, model: str, version: str | None = None) -> list[dict[str, Any]]: ...


def touching(entries: list[dict[str, Any]], version: str | None) -> list[dict[str, Any]]:
    """The entries that decided on ``version`` or moved champion from or to it (all of them for None)."""
    if version is None:
        return entries
    return [e for e in entries if version in (e.get("version"), e.get("previous"), e.get("champion_after"))]


class SQLiteHistory:
    """The promotion history in one SQLite table (every decision, in order)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS promotions (seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, "
                "version TEXT, status TEXT NOT NULL, entry TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def append(self, entry: dict[str, Any]) -> int:
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO promotions (model, version, status, entry) VALUES (?, ?, ?, ?)",
                (entry["model"], entry.get("version"), entry["status"], json.dumps(entry, default=str)),
            )
            return int(cur.lastrowid)

    def set_status(self, seq: int, status: str, note: str = "") -> None:
        with self._connect() as db:
            row = db.execute("SELECT entry FROM promotions WHERE seq = ?", (seq,)).fetchone()
            entry = json.loads(row[0]) | {"status": status}
            if note:
                entry["note"] = note
            db.execute(
                "UPDATE promotions SET status = ?, entry = ? WHERE seq = ?",
                (status, json.dumps(entry, default=str), seq),
            )

    def entries(self, model: str, version: str | None = None) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT seq, entry FROM promotions WHERE model = ? ORDER BY seq", (model,)).fetchall()
        return touching([json.loads(e) | {"seq": s} for s, e in rows], version)


class PostgresHistory:
    """The promotion history in a PostgreSQL table (``promotions``), created on first use."""

    def __init__(self, url: str):
        self.url = url
        with self._cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS promotions (seq BIGSERIAL PRIMARY KEY, model TEXT NOT NULL, version TEXT, "
                "status TEXT NOT NULL, entry JSONB NOT NULL)"
            )

    @contextmanager
    def _cursor(self):
        """One transaction on a fresh connection, closed after (psycopg2's ``with`` commits but does not close)."""
        db = self._connect()
        try:
            with db, db.cursor() as cur:
                yield cur
        finally:
            db.close()

    def _connect(self):
        import psycopg2

        try:
            return psycopg2.connect(self.url, connect_timeout=10)
        except psycopg2.OperationalError as exc:
            raise ConfigError(
                f"promotion history {masked_url(self.url)}: cannot connect: {' '.join(str(exc).split())}"
            ) from None

    def append(self, entry: dict[str, Any]) -> int:
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO promotions (model, version, status, entry) VALUES (%s, %s, %s, %s) RETURNING seq",
                (entry["model"], entry.get("version"), entry["status"], json.dumps(entry, default=str)),
            )
            return int(cur.fetchone()[0])

    def set_status(self, seq: int, status: str, note: str = "") -> None:
        patch = {"status": status} | ({"note": note} if note else {})
        with self._cursor() as cur:
            cur.execute(
                "UPDATE promotions SET status = %s, entry = entry || %s::jsonb WHERE seq = %s",
                (status, json.dumps(patch), seq),
            )

    def entries(self, model: str, version: str | None = None) -> list[dict[str, Any]]:
        with self._cursor() as cur:
            cur.execute("SELECT seq, entry FROM promotions WHERE model = %s ORDER BY seq", (model,))
            rows = cur.fetchall()
        return touching([e | {"seq": s} for s, e in rows], version)


def default_history_path(tracking_uri: str) -> Path:
    """``promotions.sqlite`` beside a local MLflow store (sqlite:/// or a file store).

    Raises:
        ConfigError: a remote tracking server: name ``registry.history`` (a database every promoter reaches).
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        return Path(unquote(parsed.path)).parent / "promotions.sqlite"
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path)) / "promotions.sqlite"
    raise ConfigError(
        f"tracking URI {tracking_uri} is a server, not a local store: set registry.history to a database every "
        "promoter reaches "
        "(postgresql://user@host:port/db)"
    )


def holder_stack(entries: list[dict[str, Any]]) -> list[str]:
    """Champions in the order they took over, with rolled-back ones popped (a second rollback goes further back)."""
    stack: list[str] = []
    for e in entries:
        if e["status"] != "done" or not e["promoted"] or e["champion_after"] is None:
            continue
        if e["action"] == "rollback" and stack:
            stack.pop()
            if not stack or stack[-1] != e["champion_after"]:
                stack.append(e["champion_after"])
        else:
            stack.append(e["champion_after"])
    return stack


def check_chain(entries: list[dict[str, Any]], alias: str | None) -> list[str]:
    """What is inconsistent in a history (empty: every move continues the last, and the alias is the last holder)."""
    problems = []
    holder = None
    for e in entries:
        if e["status"] == "pending":
            problems.append(f"entry {e['seq']} is pending")
        if e["status"] != "done":
            continue
        if e["previous"] != holder:
            problems.append(
                f"entry {e['seq']}: previous {holder_label(e['previous'])} but the holder was {holder_label(holder)}"
            )
        holder = e["champion_after"]
    if holder != alias:
        problems.append(f"alias is {holder_label(alias)} but the history ends with {holder_label(holder)}")
    return problems


def with_decision(description: str, entry: dict[str, Any]) -> str:
    """The description with one promotion decision appended (history entry ``entry``)."""
    reasons = "; ".join(entry.get("reasons") or [])
    line = (
        f"- #{entry['seq']} {entry['time']} {entry['action']}: {entry['decision']} (champion "
        f"{version_label(entry['previous'])} -> {version_label(entry['champion_after'])})"
        + (f": {reasons}" if reasons else "")
    )
    if GATE_HEADING not in description:
        description = description.rstrip() + f"\n\n{GATE_HEADING}\n\n"
    return description.rstrip() + "\n" + line + "\n"
