"""The application layer: the ``empathy-distill`` command, launching pipelines on a stack, the registry commands.

Layers, outer to inner: ``app`` → ``pipelines`` → ``steps`` → ``empathy_distill`` (the core, which imports
none of the others and no ZenML).
"""
