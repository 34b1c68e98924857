"""Typed configs: one pydantic model per stage, loaded from YAML with ``--set`` overrides.

Every model forbids unknown keys, so a typo in a config file fails loudly with
the path of the offending key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from empathy_distill.errors import ConfigError


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SplitConfig(Strict):
    """How dialogues are split into train and test."""

    method: Literal["auto", "paper", "hash"] = "auto"
    """auto: the paper's rule when every dialogue has >= 2 ratings, else hash."""
    test_fraction: float = Field(0.125, gt=0.0, lt=1.0)
    """Share of dialogues in test for the hash split."""
    seed: int = 0
    """Salt of the hash split."""


class DataConfig(Strict):
    """Where the dialogues come from."""

    path: str = "data/sample/dialogues.csv"
    """A CSV or JSONL file, or a datasets save_to_disk folder; relative to the working folder."""
    format: Literal["auto", "llms_vs_humans", "empathetic_dialogues", "jsonl", "hf_datasets"] = "auto"
    """auto detects the format from the content."""
    split: SplitConfig = SplitConfig()


class ValidationConfig(Strict):
    """Bounds the raw validation suite enforces."""

    max_text_chars: int = Field(5000, ge=16)
    """Longest situation, utterance or response kept (characters)."""


class TrackingConfig(Strict):
    """MLflow naming (the tracking URI comes from the active ZenML stack)."""

    experiment: str | None = None
    """MLflow experiment; default: the pipeline's name."""


class DistillConfig(Strict):
    """The whole run: one section per stage."""

    name: str = "empathy-distill"
    """A label for this config, logged with every run."""
    data: DataConfig = DataConfig()
    validation: ValidationConfig = ValidationConfig()
    tracking: TrackingConfig = TrackingConfig()


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", value parsed as YAML, so numbers and booleans get their types)."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DistillConfig:
    """Reads a YAML config (or the defaults) and applies ``key=value`` overrides.

    Raises:
        ConfigError: unreadable YAML, an unknown key or a value of the wrong type.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            tree = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    try:
        return DistillConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path or 'config'}: {where}: {first['msg']}") from None
