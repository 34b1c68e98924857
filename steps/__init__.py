"""ZenML steps: one per file, thin wrappers around ``empathy_distill``."""

from steps.ingest_dialogues import ingest_dialogues
from steps.validate_dialogues import validate_dialogues

__all__ = ["ingest_dialogues", "validate_dialogues"]
