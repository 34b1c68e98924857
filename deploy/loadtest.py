"""A load loop against a served address: N clients sending chats back to back, every reply recorded with the version
that answered it, so that a switch can be measured from the client's side.

Used by the switch test and by ``bench/serve_switch.py``: while the loop runs, the caller moves
the alias (``mark`` records when); ``summary`` then says how many requests failed, which
version answered each one against the alias at the time it was sent, and how long after each
move the replies followed.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Record:
    sent: float
    done: float
    status: int
    version: str | None
    error: str = ""


@dataclass
class LoadLoop:
    """``clients`` threads, each sending ``POST /v1/chat/completions`` for ``model`` until ``stop``."""

    url: str
    clients: int = 8
    model: str = "champion"
    max_tokens: int = 8
    timeout_s: float = 60.0
    records: list[Record] = field(default_factory=list)
    moves: list[tuple[float, str]] = field(default_factory=list)
    """(time, version) each time the caller moved the alias."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, i: int) -> Record:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": f"Day {i} was long and I feel low."}],
            "max_tokens": self.max_tokens,
        }
        req = urllib.request.Request(
            self.url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        sent = time.time()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                reply = json.loads(resp.read())
                return Record(sent, time.time(), resp.status, reply["model"].rsplit("/", 1)[-1])
        except urllib.error.HTTPError as err:
            return Record(sent, time.time(), err.code, None, err.read().decode(errors="replace")[:200])
        except (OSError, ValueError, KeyError) as exc:
            return Record(sent, time.time(), 0, None, f"{type(exc).__name__}: {exc}")

    def _client(self, k: int) -> None:
        i = k
        while not self._stop.is_set():
            record = self.one(i)
            with self._lock:
                self.records.append(record)
            i += self.clients

    def start(self) -> LoadLoop:
        self._threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def mark(self, version: str) -> None:
        """The alias is about to name ``version``: call right before moving it. A reply from the old version until the
        new one answers is expected (``stale``); marking after the move would count replies the router already
        switched for, while the move's own registry writes were still running, in the previous move's window."""
        self.moves.append((time.time(), str(version)))

    def wait_for(self, version: str, timeout_s: float) -> float:
        """Seconds from the last ``mark`` until a reply sent after it came from ``version``."""
        moved = self.moves[-1][0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                hits = [r.done for r in self.records if r.sent >= moved and r.version == str(version)]
            if hits:
                return min(hits) - moved
            time.sleep(0.05)
        raise TimeoutError(f"no reply from v{version} within {timeout_s:.0f} s of the move")

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout_s + 5)

    def summary(self) -> dict[str, Any]:
        """Requests, failures, p50/p99, and per move: the lag until replies followed and the stale replies after it
        (sent after the move, answered by the version before; expected while the new one loads, never after)."""
        records = sorted(self.records, key=lambda r: r.sent)
        ok = [r for r in records if r.status == 200]
        latencies = sorted(r.done - r.sent for r in ok)
        out: dict[str, Any] = {
            "requests": len(records),
            "failures": len(records) - len(ok),
            "failure_samples": [f"{r.status} {r.error}" for r in records if r.status != 200][:5],
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(1000 * latencies[max(0, int(0.99 * len(latencies)) - 1)], 1) if latencies else None,
            "moves": [],
        }
        for k, (moved, version) in enumerate(self.moves):
            until = self.moves[k + 1][0] if k + 1 < len(self.moves) else float("inf")
            window = [r for r in ok if moved <= r.sent < until]
            first = next((r.done for r in window if r.version == version), None)
            out["moves"].append(
                {
                    "to": version,
                    "replies": len(window),
                    "lag_s": round(first - moved, 2) if first is not None else None,
                    "stale": sum(r.version != version for r in window),
                    "stale_after_switch": sum(r.version != version for r in window if first and r.sent > first),
                }
            )
        return out
