"""empathy-distill: distil empathy from a teacher LLM into a small student model.

The core library: it imports no ZenML, so every piece can be used and tested alone.
The ZenML steps in ``steps/`` are thin wrappers around it.
"""

__version__ = "0.1.0"
