"""The promotion lock: exclusive across processes while ``champion`` moves (a file lock on one machine, a PostgreSQL
advisory lock across machines; an advisory lock dies with its connection, so a crash never leaves the registry
locked)."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from empathy_distill.tracking import masked_url


class PromotionLock(Protocol):
    def hold(self) -> Any:
        """A context manager: exclusive for its duration, across processes."""


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
                            f"promotion lock in {masked_url(self.url)} held for more than {self.timeout_s:.0f} s"
                        )
                    time.sleep(0.01)
                try:
                    yield
                finally:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (self.KEY,))
        finally:
            db.close()
