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

The lock (:mod:`~empathy_distill.registry.locks`) and the history
(:mod:`~empathy_distill.registry.history`) sit behind two small interfaces: a file lock and SQLite for one
machine (the embedded store), or a PostgreSQL advisory lock and table for every machine
that promotes against a shared tracking server (``registry.history: postgresql://...``).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from empathy_distill.config import RegistryConfig
from empathy_distill.errors import ConfigError
from empathy_distill.judging.results import EvaluationReport
from empathy_distill.registry.aliases import CHAMPION, holder_label
from empathy_distill.registry.history import (
    PostgresHistory,
    PromotionDecision,
    PromotionHistory,
    SQLiteHistory,
    default_history_path,
    holder_stack,
    with_decision,
)
from empathy_distill.registry.locks import FileLock, PostgresLock, PromotionLock
from empathy_distill.registry.policy import GateResult, gate, record_decision
from empathy_distill.tracking import log_promotion

# A test hook: set to a stage name to die there (kill -9 style) and leave the state a crash leaves.
CRASH_ENV = "EMPATHY_DISTILL_CRASH_AT"


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
    ) -> PromotionDecision:
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
                    f"stale: champion moved from {holder_label(expected)} to {holder_label(current)} "
                    f"since this decision was made; "
                    "nothing changed"
                )
            if promote and current == version:
                moved = False
                reasons.append(f"{holder_label(version)} already holds champion")
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
            # under the lock: two processes tagging one version at once raced MLflow's tag upsert (an IntegrityError
            # on the server's store) and its description's read-modify-write (a decision lost from the page)
            self._mirror(entry)
        return PromotionDecision.from_entry(entry)

    def rollback(self, model: str, actor: str = "", reason: str = "") -> PromotionDecision:
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
                    f"{holder_label(current)} of '{model}' has no earlier champion in the promotion "
                    f"history: nothing to roll "
                    "back to"
                )
        return self.move_champion(
            model,
            previous,
            expected=current,
            promote=True,
            action="rollback",
            reasons=[f"rollback from {holder_label(current)}" + (f": {reason}" if reason else "")],
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
                notes.append(f"entry {e['seq']}: alias had moved to {holder_label(current)}, entry completed")
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
                        f"champion was {holder_label(current)}, the history said "
                        f"{holder_label(recorded)}: moved outside empathy-distill"
                    ],
                    "figures": {},
                    "actor": "reconcile",
                    "time": datetime.now(UTC).isoformat(timespec="seconds"),
                    "repaired": [],
                }
            )
            notes.append(f"alias moved outside the tool: {holder_label(recorded)} -> {holder_label(current)} recorded")
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
        current = self.client.get_model_version(entry["model"], entry["version"]).description or ""
        self.client.update_model_version(entry["model"], entry["version"], description=with_decision(current, entry))


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


def promote_if_it_wins(
    tracking_uri: str,
    registry: RegistryConfig,
    version: str,
    evaluation: EvaluationReport,
    champion_version: str | None,
    actor: str,
) -> tuple[GateResult, PromotionDecision]:
    """The pipeline's gate: ``registry.policy`` on this run's evaluation; ``champion`` moves to ``version`` when it
    passes and ``champion_version`` still holds it (compare-and-set). The decision is in the history whatever it is,
    and in the active MLflow run.
    """
    result = gate(evaluation, registry.policy, champion_version)
    promotions = Promotions.open(tracking_uri, registry.history)
    decision = record_decision(promotions, registry.model_name, version, champion_version, result, "gate", actor)
    log_promotion(decision.model_dump())
    return result, decision
