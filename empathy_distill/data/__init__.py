"""Dialogue ingestion: readers per format, one long table, splits and content hashes."""

from empathy_distill.data.ingest import IngestResult, ingest, read_dialogues
from empathy_distill.data.schema import DIALOGUE_COLUMNS, FORMATS

__all__ = ["DIALOGUE_COLUMNS", "FORMATS", "IngestResult", "ingest", "read_dialogues"]
