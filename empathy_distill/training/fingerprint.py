"""Content fingerprints of a base model, so that "the same model" means the same weights, not the same path.

A local folder is fingerprinted by its files: names, sizes and content (files up to
``FULL_HASH_BYTES`` hashed whole; larger weight shards by their size and their first and
last MiB, which stays cheap for multi-GB shards yet changes with any retrained weights).
A hub id is fingerprinted by the revision in the local Hugging Face cache when it is there.
Training stage keys and the registry use it: a different model at the same path retrains,
and a registered version refuses a base folder that no longer matches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FULL_HASH_BYTES = 64 * 1024 * 1024
EDGE_BYTES = 1024 * 1024
SKIP = {"student_info.json", "train_result.json"}  # facts about the folder, not the model


def is_local_model(name: str) -> bool:
    return Path(name).expanduser().is_dir()


def folder_size(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _file_digest(path: Path, size: int) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(fh.read(EDGE_BYTES))
            fh.seek(size - EDGE_BYTES)
            digest.update(fh.read(EDGE_BYTES))
    return digest.digest()


def model_fingerprint(name: str) -> str:
    """``sha256:...`` of a local model folder's files, or ``hub:<id>@<revision>`` (``hub:<id>`` when not cached)."""
    path = Path(name).expanduser()
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in SKIP):
            rel = file.relative_to(path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            size = file.stat().st_size
            digest.update(f"{rel.as_posix()}\0{size}\0".encode())
            digest.update(_file_digest(file, size))
        return "sha256:" + digest.hexdigest()
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - an id the cache cannot parse is still an id
        cached = None
    if isinstance(cached, str) and "/snapshots/" in cached:
        return f"hub:{name}@{cached.split('/snapshots/')[1].split('/')[0]}"
    return f"hub:{name}"
