"""ZenML materializers for this project's artifact types (one per file)."""

from materializers.dialogue_table import DialogueTableMaterializer

__all__ = ["DialogueTableMaterializer"]
