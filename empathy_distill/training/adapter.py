"""An adapter as a value: its folder plus what it was trained from (for lineage)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel


class Adapter(BaseModel):
    """A LoRA adapter folder (PEFT ``save_pretrained`` layout) and its provenance."""

    path: str
    """Local folder holding adapter_config.json and the weights."""
    base_model: str
    """The base model it applies to (a folder or hub id)."""
    stage: str
    """sft or dpo."""
    weights_hash: str
    """sha256 of the LoRA tensors after training."""
    global_step: int = 0
    rows: int = 0
    warnings: list[str] = []
    """What the stage found worth saying (e.g. trivially separable DPO pairs)."""

    @classmethod
    def from_stage(cls, result) -> Adapter:
        """The adapter a training stage (:class:`~empathy_distill.training.resume.StageResult`) saved."""
        same = {name: getattr(result, name) for name in ("base_model", "stage", "global_step", "rows")}
        same["warnings"] = list(getattr(result, "warnings", []))
        return cls(path=result.adapter_dir, weights_hash=result.hash_after, **same)


def folder_hash(folder: str | Path) -> str:
    """sha256 over every file under a folder (relative names included), for round-trip checks."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()
