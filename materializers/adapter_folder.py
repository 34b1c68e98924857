"""Materializer for LoRA adapters: the folder is copied into the artifact store, not pickled.

Loading copies it back to a local folder (a temporary one for remote stores), so
PEFT can read it with ``PeftModel.from_pretrained`` wherever the step runs.
"""

import json
import os
import tempfile
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from empathy_distill.training.adapter import Adapter

_META = "adapter.json"
_FILES = "files"


def _copy_tree(src: str, dst: str) -> None:
    fileio.makedirs(dst)
    for entry in fileio.listdir(src):
        name = entry.decode() if isinstance(entry, bytes) else entry
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if fileio.isdir(s):
            _copy_tree(s, d)
        else:
            fileio.copy(s, d, overwrite=True)


class AdapterFolderMaterializer(BaseMaterializer):
    """Stores ``Adapter`` as ``files/`` (the adapter folder) plus ``adapter.json`` (provenance)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (Adapter,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def save(self, data: Adapter) -> None:
        _copy_tree(data.path, os.path.join(self.uri, _FILES))
        with fileio.open(os.path.join(self.uri, _META), "w") as fh:
            fh.write(data.model_dump_json(indent=2))

    def load(self, data_type: type[Any]) -> Adapter:
        with fileio.open(os.path.join(self.uri, _META), "r") as fh:
            meta = json.loads(fh.read())
        stored = os.path.join(self.uri, _FILES)
        if os.path.isdir(stored):  # a local artifact store: read in place
            local = stored
        else:
            local = tempfile.mkdtemp(prefix="adapter-")
            _copy_tree(stored, local)
        return Adapter(**{**meta, "path": local})

    def extract_metadata(self, data: Adapter) -> dict[str, Any]:
        return {
            "stage": data.stage,
            "base_model": data.base_model,
            "weights_hash": data.weights_hash,
            "global_step": data.global_step,
            "rows": data.rows,
        }
