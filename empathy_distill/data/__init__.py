"""Dialogue ingestion: readers per format (``readers``), one long table (``schema``),
splits (``splits``), content hashes (``hashing``) and the end-to-end ``ingest``."""
