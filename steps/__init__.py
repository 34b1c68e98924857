"""ZenML steps: one per file, thin wrappers around ``empathy_distill``."""

from steps.bootstrap_responses import bootstrap_responses
from steps.build_training_sets import build_training_sets
from steps.ingest_dialogues import ingest_dialogues
from steps.validate_dialogues import validate_dialogues
from steps.validate_training_sets import validate_training_sets

__all__ = ["bootstrap_responses", "build_training_sets", "ingest_dialogues", "validate_dialogues", "validate_training_sets"]
