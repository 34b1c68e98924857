"""The retrain gate's decision: run ``distill`` only when an input differs from what the champion was trained on."""

from __future__ import annotations

import json
from typing import Any

from empathy_distill.registry.inputs import changed_parts, input_hashes, library_versions
from empathy_distill.registry.promotion import Promotions


def library_changes(recorded: str) -> str:
    """``trl 0.19.0 -> 0.20.0, ...``: what moved since the versions a champion recorded."""
    try:
        before = json.loads(recorded)
    except ValueError:
        return "versions not recorded"
    now = library_versions()
    moved = [f"{k} {before.get(k, 'missing')} -> {v}" for k, v in now.items() if before.get(k) != v]
    return ", ".join(moved) or "same versions"


def decide(client: Any, model: str, champion: str | None, now: dict[str, str], force: bool = False) -> tuple[bool, str]:
    """(run or not, the line that says why): the parts of ``now`` (:func:`~empathy_distill.registry.inputs.
    input_hashes`) that differ from the champion's ``inputs.*`` tags, each named."""
    if champion is None:
        return True, f"retrain: no champion of '{model}' yet: running"
    tags = client.get_model_version(model, champion).tags
    changed = changed_parts(now, {k.split(".", 1)[1]: v for k, v in tags.items() if k.startswith("inputs.")})
    if not changed and not force:
        return False, f"retrain: nothing changed since champion v{champion} (inputs {now['all'][:19]}): no run"
    if "libraries" in changed and tags.get("lineage.libraries"):
        changed[changed.index("libraries")] = "libraries (" + library_changes(tags["lineage.libraries"]) + ")"
    if changed:
        return True, f"retrain: changed since champion v{champion}: {', '.join(changed)}: running"
    return True, f"retrain: nothing changed since champion v{champion}, --force: running"


def retrain_decision(config: Any, tracking_uri: str, force: bool = False) -> tuple[bool, str]:
    """:func:`decide` for ``config`` (a prepared :class:`~empathy_distill.config.DistillConfig`: absolute paths) on
    the registry at ``tracking_uri``: the inputs are hashed now, the champion read now."""
    # import-time: empathy_distill.data.hashing 0.6 s to import (empathy_distill.registry.retrain alone 0.3 s)
    from empathy_distill.data.hashing import file_fingerprint

    p = Promotions.open(tracking_uri, config.registry.history)
    model = config.registry.model_name
    return decide(p.client, model, p.alias(model), input_hashes(config, file_fingerprint(config.data.path)), force)
