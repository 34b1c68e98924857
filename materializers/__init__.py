"""ZenML materializers for this project's artifact types (one per file).

The dialogue tables are pandas DataFrames and use ZenML's pandas materializer,
which stores them as parquet (not pickle) with a CSV preview; see
``tests/e2e/test_distill_pipeline.py`` for the round-trip check.
"""
