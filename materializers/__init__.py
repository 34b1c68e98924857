"""ZenML materializers for this project's artifact types (one per file)."""

from materializers.adapter_folder import AdapterFolderMaterializer
from materializers.dialogue_table import DialogueTableMaterializer

__all__ = ["AdapterFolderMaterializer", "DialogueTableMaterializer"]
