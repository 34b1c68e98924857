"""Evaluation: pairwise judges (LLM or the offline scorer), verdict parsing and statistics."""
