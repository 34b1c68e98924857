"""Moving ``champion``: an exclusive lock, compare-and-set, and a promotion history the project keeps.

MLflow aliases have no history and no compare-and-set: two writers racing on one alias
lose updates. So every move of ``champion`` (gate, manual promotion, rollback) runs
through :func:`move_champion`, which

1. takes the :class:`PromotionLock` (exclusive across processes),
2. repairs what a crash left half-done (:func:`reconcile`),
3. checks that the holder the caller read still holds ``champion`` (else: ``stale``, no move),
4. writes the decision to the :class:`PromotionHistory` as ``pending``, moves the alias,
   then marks the entry ``done``.

A crash between 4's steps leaves a ``pending`` entry: the next call completes it when the
alias did move and marks it ``aborted`` when it did not. Every decision is kept, promoted
or not; the chain (each move's ``previous`` = the prior move's ``champion_after``, the last
one = the alias) is what :func:`check_chain` verifies.

The lock and the history sit behind two small interfaces: a file lock and SQLite for one
machine (the embedded store), or a PostgreSQL advisory lock and table for every machine
that promotes against a shared tracking server (``registry.history: postgresql://...``).
An advisory lock belongs to its connection: a promoter killed while holding it releases
it with its connection, so a crash never leaves the registry locked.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from empathy_distill.errors import ConfigError

CHAMPION, CHALLENGER = "champion", "challenger"
# A test hook: set to a stage name to die there (kill -9 style) and leave the state a crash leaves.
CRASH_ENV = "EMPATHY_DISTILL_CRASH_AT"


class PromotionLock(Protocol):
    def hold(self) -> Any:
        """A context manager: exclusive for its duration, across processes."""


class PromotionHistory(Protocol):
    def append(self, entry: dict[str, Any]) -> int: ...
    def set_status(self, seq: int, status: str, note: str = "") -> None: ...
    def entries(self, model: str, version: str | None = None) -> list[dict[str, Any]]: ...


def touching(entries: list[dict[str, Any]], version: str | None) -> list[dict[str, Any]]:
    """The entries that decided on ``version`` or moved champion from or to it (all of them for None)."""
    if version is None:
        return entries
    return [e for e in entries if version in (e.get("version"), e.get("previous"), e.get("champion_after"))]


class FileLock:
    """``flock`` on a file: exclusive between processes on one machine (and between threads, one fd each)."""

    def __init__(self, path: str | Path, timeout_s: float = 120.0):
        self.path = Path(path)
        self.timeout_s = timeout_s

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as fh:
            deadline = time.monotonic() + self.timeout_s
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"promotion lock {self.path} held for more than {self.timeout_s:.0f} s"
                        ) from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


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
                f"promotion history {_safe(self.url)}: cannot connect: {' '.join(str(exc).split())}"
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


class PostgresLock:
    """A session-level advisory lock: exclusive across machines, released if its holder dies."""

    KEY = 0x656D7061  # one lock per history database

    def __init__(self, url: str, timeout_s: float = 120.0):
        self.url = url
        self.timeout_s = timeout_s

    @contextmanager
    def hold(self) -> Iterator[None]:
        import psycopg2

        db = psycopg2.connect(self.url, connect_timeout=10)
        db.autocommit = True
        try:
            with db.cursor() as cur:
                deadline = time.monotonic() + self.timeout_s
                while True:
                    cur.execute("SELECT pg_try_advisory_lock(%s)", (self.KEY,))
                    if cur.fetchone()[0]:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"promotion lock in {_safe(self.url)} held for more than {self.timeout_s:.0f} s"
                        )
                    time.sleep(0.01)
                try:
                    yield
                finally:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (self.KEY,))
        finally:
            db.close()


def _safe(url: str) -> str:
    """A database URL without its password, for messages."""
    parsed = urlparse(url)
    return url.replace(f":{parsed.password}@", ":***@") if parsed.password else url


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


class Promotions:
    """The history and lock of one registry, and the MLflow client that moves its aliases."""

    def __init__(self, client: Any, history: PromotionHistory, lock: PromotionLock):
        self.client = client
        self.history = history
        self.lock = lock

    @classmethod
    def open(cls, tracking_uri: str, history: str | None = None) -> Promotions:
        """The registry at ``tracking_uri`` with its history: a PostgreSQL URL, a SQLite file, or (None) one beside a
        local store."""
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        if history and history.startswith(("postgresql://", "postgres://")):
            return cls(client, PostgresHistory(history), PostgresLock(history))
        path = Path(history) if history else default_history_path(tracking_uri)
        return cls(client, SQLiteHistory(path), FileLock(path.with_suffix(".lock")))

    def alias(self, model: str, alias: str = CHAMPION) -> str | None:
        """The version an alias points at, or None (no such alias or model)."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def move_champion(
        self,
        model: str,
        version: str | None,
        *,
        expected: str | None,
        promote: bool,
        action: str,
        reasons: list[str] | None = None,
        figures: dict[str, Any] | None = None,
        actor: str = "",
        repaired: list[str] | None = None,
    ) -> dict[str, Any]:
        """Records one decision and, when ``promote``, moves ``champion`` to ``version`` if ``expected`` still holds it.

        Args:
            model: registered model name.
            version: the version decided on.
            expected: the champion the decision was made against (None: there was none).
            promote: the decision (a gate's pass, a manual or forced promotion, a rollback).
            action: gate, manual, forced or rollback.
            reasons: why not (a gate's reasons), or a force's reason.
            figures: the gate's checks, for the record.
            actor: who decided (a pipeline run, ``cli:user``).

        Returns:
            The history entry (``promoted``, ``previous``, ``champion_after``, ``status``, ``seq``, ...).
        """
        reasons = list(reasons or [])
        with self.lock.hold():
            repaired = [*(repaired or []), *self.reconcile(model)]  # a caller's own repairs (rollback) first
            current = self.alias(model)
            moved = promote
            if promote and current != expected:
                moved = False
                reasons.append(
                    f"stale: champion moved from {_v(expected)} to {_v(current)} since this decision was made; "
                    "nothing changed"
                )
            if promote and current == version:
                moved = False
                reasons.append(f"{_v(version)} already holds champion")
            entry = {
                "model": model,
                "version": version,
                "action": action,
                "promoted": moved,
                "decision": "promoted" if moved else "not promoted",
                "previous": current,
                "champion_after": version if moved else current,
                "reasons": reasons,
                "figures": figures or {},
                "actor": actor,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "repaired": repaired,
                "status": "pending" if moved else "done",
            }
            entry["seq"] = self.history.append(entry)
            if moved:
                _crash_point("before_alias")
                self.client.set_registered_model_alias(model, CHAMPION, version)
                _crash_point("after_alias")
                self.history.set_status(entry["seq"], "done")
                entry["status"] = "done"
        self._mirror(entry)
        return entry

    def rollback(self, model: str, actor: str = "", reason: str = "") -> dict[str, Any]:
        """``champion`` back to the version that held it before the current one (recorded like any move).

        Raises:
            ConfigError: there is no champion, or no earlier holder to go back to.
        """
        with self.lock.hold():
            repaired = self.reconcile(model)
            current = self.alias(model)
            if current is None:
                raise ConfigError(f"model '{model}' has no champion: nothing to roll back")
            holders = holder_stack(self.history.entries(model))
            previous = holders[-2] if len(holders) >= 2 and holders[-1] == current else None
            if previous is None:
                raise ConfigError(
                    f"{_v(current)} of '{model}' has no earlier champion in the promotion history: nothing to roll "
                    "back to"
                )
        return self.move_champion(
            model,
            previous,
            expected=current,
            promote=True,
            action="rollback",
            reasons=[f"rollback from {_v(current)}" + (f": {reason}" if reason else "")],
            actor=actor,
            repaired=repaired,
        )

    def reconcile(self, model: str) -> list[str]:
        """Repairs what a crash or an outside hand left: call with the lock held. Returns what was repaired."""
        notes = []
        entries = self.history.entries(model)
        current = self.alias(model)
        for e in entries:
            if e["status"] != "pending":
                continue
            if current == e["champion_after"]:
                self.history.set_status(
                    e["seq"], "done", "completed by the next promotion: the alias had moved before a crash"
                )
                notes.append(f"entry {e['seq']}: alias had moved to {_v(current)}, entry completed")
            else:
                self.history.set_status(e["seq"], "aborted", "the alias never moved (crash before the move)")
                notes.append(f"entry {e['seq']}: alias never moved, entry aborted")
        done = [e for e in self.history.entries(model) if e["status"] == "done"]
        recorded = done[-1]["champion_after"] if done else None
        if recorded != current:  # moved outside this tool: record what is, so the chain stays whole
            self.history.append(
                {
                    "model": model,
                    "version": current,
                    "action": "external",
                    "promoted": current is not None,
                    "decision": "observed",
                    "previous": recorded,
                    "champion_after": current,
                    "status": "done",
                    "reasons": [
                        f"champion was {_v(current)}, the history said {_v(recorded)}: moved outside empathy-distill"
                    ],
                    "figures": {},
                    "actor": "reconcile",
                    "time": datetime.now(UTC).isoformat(timespec="seconds"),
                    "repaired": [],
                }
            )
            notes.append(f"alias moved outside the tool: {_v(recorded)} -> {_v(current)} recorded")
        return notes

    def _mirror(self, entry: dict[str, Any]) -> None:
        """The decision as tags of the version decided on, and a line of its description (MLflow keeps no history of
        its own)."""
        if entry.get("version") is None:
            return
        tags = {
            "promotion.last_seq": str(entry["seq"]),
            "promotion.last_action": entry["action"],
            "promotion.last_decision": entry["decision"],
            "promotion.last_time": entry["time"],
            "promotion.last_reasons": ("; ".join(entry["reasons"]) or "all rules met")[:5000],
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(entry["model"], entry["version"], key, value)
        # and appended to the version's description: its page in MLflow lists every decision about it
        from empathy_distill.registry.lineage import with_decision

        current = self.client.get_model_version(entry["model"], entry["version"]).description or ""
        self.client.update_model_version(entry["model"], entry["version"], description=with_decision(current, entry))


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
            problems.append(f"entry {e['seq']}: previous {_v(e['previous'])} but the holder was {_v(holder)}")
        holder = e["champion_after"]
    if holder != alias:
        problems.append(f"alias is {_v(alias)} but the history ends with {_v(holder)}")
    return problems


def version_label(version: str | None, missing: str = "none") -> str:
    """``v3``, or ``missing`` when there is no version."""
    return f"v{version}" if version else missing


def _v(version: str | None) -> str:
    return version_label(version, "(none)")


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)
