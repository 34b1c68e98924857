"""What each name a client sends (``champion``, ``challenger``, a version) answers with, kept in step with the registry.

A follower thread reads the registry's aliases every ``poll_s`` seconds. When ``champion`` (or
``challenger``) points at another version, that version is loaded and warmed beside the one
serving; only then does the route switch, in one assignment. A request resolves its route once,
when it arrives, and keeps that version to the end, and the version it left stays loaded (it is
the rollback target), so a switch never fails or cuts a request. A version that fails to load
leaves the route where it was; the error is reported on ``/health`` and retried after
``retry_s``.

Alias reads are a poll rather than MLflow's registry webhooks because webhooks are sent only by
a tracking server on a SQL store, and the embedded store that ``make demo`` uses has none; a
poll works against every store, and its cost is one indexed read per alias per interval.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from empathy_distill.serving.api import ApiError
from empathy_distill.serving.pool import Pool, Version

logger = logging.getLogger(__name__)

FOLLOWED = ("champion", "challenger")


@dataclass
class Switch:
    """One route change, as the server saw it."""

    alias: str
    old: str | None
    new: str | None
    noticed: float
    """Unix time the poll saw the alias move."""
    served: float
    """Unix time the route switched (the new version loaded and warm)."""


@dataclass
class Router:
    """The routes of one registered model and the thread that keeps them on the registry's aliases.

    Args:
        pool: where versions are loaded.
        default: the route ``/invocations`` and the model's bare name answer with: ``champion``, another alias, or a
            version number (pinned: it never moves).
        poll_s: seconds between registry reads.
        state_file: a JSON record of what is served (rewritten on every switch), for the deploy step and scripts.
    """

    pool: Pool
    default: str = "champion"
    poll_s: float = 1.0
    retry_s: float = 30.0
    state_file: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)
    routes: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    switches: list[Switch] = field(default_factory=list)
    _failed_at: dict[tuple[str, str], float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def followed(self) -> tuple[str, ...]:
        pinned = self.default.isdigit()
        return FOLLOWED if pinned or self.default in FOLLOWED else (*FOLLOWED, self.default)

    def _client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.pool.tracking_uri, registry_uri=self.pool.tracking_uri)

    def registry_alias(self, alias: str) -> str | None:
        """The version the registry's alias names now (None: no such alias)."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self._client().get_model_version_by_alias(self.pool.model_name, alias).version)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
                return None
            raise

    def refresh(self) -> None:
        """One pass: every followed alias read, and each one that moved loaded and switched."""
        if self.default.isdigit() and self.routes.get(self.default) is None:
            self._switch(self.default, self.default)
        for alias in self.followed:
            try:
                target = self.registry_alias(alias)
            except Exception as exc:  # noqa: BLE001 (the registry down: keep serving what is loaded, say so)
                self.errors[alias] = f"registry read failed: {exc}"
                continue
            if target == self.routes.get(alias):
                self.errors.pop(alias, None)
                continue
            failed = self._failed_at.get((alias, str(target)))
            if failed is not None and time.monotonic() - failed < self.retry_s:
                continue
            self._switch(alias, target)

    def _switch(self, alias: str, target: str | None) -> None:
        noticed = time.time()
        old = self.routes.get(alias)
        if target is not None:
            try:
                self.pool.ensure(target, keep=self.protected() | {target})
            except Exception as exc:  # noqa: BLE001 (a version that cannot load leaves the route where it was)
                self._failed_at[(alias, target)] = time.monotonic()
                serving = f"still serving v{old}" if old else "nothing to serve"
                self.errors[alias] = f"v{target} did not load ({' '.join(str(exc).split())[:300]}); {serving}"
                logger.error("%s: v%s did not load: %s", alias, target, exc)
                return
        self.routes[alias] = target
        self.errors.pop(alias, None)
        self.switches.append(Switch(alias, old, target, noticed, time.time()))
        logger.info("%s: v%s -> v%s", alias, old, target)
        self.pool.evict(self.protected())
        self.write_state()

    def protected(self) -> set[str]:
        """Versions kept loaded: the routes' and the champion each switch left (the rollback target)."""
        keep = {v for v in self.routes.values() if v is not None}
        keep |= {s.old for s in self.switches[-2:] if s.alias == "champion" and s.old is not None}
        return keep

    def resolve(self, name: str) -> Version:
        """The loaded version a request's ``model`` names, loading a version number on first use.

        Accepted: ``champion``, ``challenger``, the model's name (the default route), ``<name>@<alias>``,
        ``3``, ``v3``, ``<name>/3``, ``models:/<name>/3``, ``models:/<name>@<alias>``.

        Raises:
            ApiError: 404 for a name that is not this model's or an alias with no version.
        """
        ref = name.removeprefix("models:/")
        model = self.pool.model_name
        if ref in ("", model):
            ref = self.default
        elif ref.startswith((f"{model}/", f"{model}@")):
            ref = ref[len(model) + 1 :]
        if ref.startswith("v") and ref[1:].isdigit():
            ref = ref[1:]
        if ref.isdigit():
            version = self.pool.ensure(ref, keep=self.protected())
        else:
            number = self.routes.get(ref)
            if number is None:
                raise ApiError(
                    404,
                    f"model '{name}': "
                    + (
                        f"no version of {model} holds the alias '{ref}'"
                        if ref in self.followed
                        else f"not served here; ask for champion, challenger or a version of {model}"
                    ),
                    param="model",
                    code="model_not_found",
                )
            version = self.pool.versions[number]
        version.last_used = time.monotonic()
        return version

    def models(self) -> list[dict[str, Any]]:
        """``/v1/models``: the routes that hold a version, then every loaded version."""
        out = [
            {"id": alias, "object": "model", "created": 0, "owned_by": "empathy-distill", "version": number}
            for alias, number in self.routes.items()
            if number is not None
        ]
        out += [
            {"id": f"{self.pool.model_name}/{n}", "object": "model", "created": 0, "owned_by": "empathy-distill"}
            for n in sorted(self.pool.versions, key=int)
        ]
        return out

    def health(self) -> dict[str, Any]:
        return {
            "model": self.pool.model_name,
            "default": self.default,
            "routes": dict(self.routes),
            "loaded": sorted(self.pool.versions, key=int),
            "errors": dict(self.errors),
            "switch_count": len(self.switches),
            "switches": [asdict(s) for s in self.switches[-10:]],
            "engines": self.pool.stats(),
        }

    def write_state(self) -> None:
        if self.state_file is None:
            return
        record = {**self.state, **self.health(), "version": self.routes.get(self.default)}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.state_file)

    # the follower thread -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="follow-registry", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 (the follower never dies; the next poll tries again)
                logger.exception("following the registry failed")

    def stop(self) -> None:
        self._stop.set()
        self.pool.close()
