"""ZenML pipelines: they only wire steps (see each pipeline's docstring for the order)."""
