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


class PriceConfig(Strict):
    """Prices per 1,000 tokens, for the cost budget and the cost metrics."""

    input_per_1k: float = Field(0.0, ge=0.0)
    """USD per 1k prompt tokens."""
    output_per_1k: float = Field(0.0, ge=0.0)
    """USD per 1k completion tokens."""
    batch_discount: float = Field(0.5, gt=0.0, le=1.0)
    """Price factor of the Batch API (OpenAI charges half)."""


class TeacherConfig(Strict):
    """The teacher LLM: any OpenAI-compatible endpoint, or a local transformers model."""

    backend: Literal["openai", "local"] = "openai"
    """openai: any OpenAI-compatible HTTP endpoint; local: a transformers model path."""
    model: str = "gpt-4o"
    """Model name at the endpoint, or a local model folder for the local backend."""
    base_url: str | None = None
    """Endpoint, e.g. http://127.0.0.1:8000/v1; None = api.openai.com."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the key (the key never goes in a config)."""
    mode: Literal["online", "batch"] = "online"
    """online: concurrent requests; batch: the Batch API (half price, hours of latency)."""
    concurrency: int = Field(64, ge=1, le=4096)
    """Requests in flight at once."""
    timeout_s: float = Field(60.0, gt=0)
    """Per-request timeout."""
    max_retries: int = Field(6, ge=0)
    """Retries on 429, 5xx, timeouts, dropped connections and malformed replies."""
    backoff_base_s: float = Field(1.0, ge=0)
    """First retry delay; doubles per retry, with jitter, capped by backoff_max_s."""
    backoff_max_s: float = Field(60.0, ge=0)
    """Longest wait between retries (a longer Retry-After is still honoured)."""
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    """Sampling temperature."""
    max_tokens: int = Field(256, ge=1)
    """Longest reply in tokens."""
    seed: int | None = 0
    """Sent to endpoints that support it; part of the cache key."""
    cache_path: str = ".cache/teacher.sqlite"
    """Reply cache (SQLite, WAL); a rerun sends no request that already completed."""
    max_requests: int | None = Field(None, ge=0)
    """Stop cleanly after this many requests sent (cache hits are free)."""
    max_cost_usd: float | None = Field(None, ge=0)
    """Stop cleanly once this much has been spent."""
    prices: PriceConfig = PriceConfig()
    batch_poll_s: float = Field(30.0, gt=0)
    """Seconds between polls of a batch job."""
    batch_timeout_s: float = Field(26 * 3600, gt=0)
    """Give up waiting for a batch after this long (it can be resumed by id later)."""
    max_failed_fraction: float = Field(0.02, ge=0.0, le=1.0)
    """The bootstrap step fails when more dialogues than this failed (not counting the budget)."""


class BootstrapConfig(Strict):
    """How training data is made: the method, the strategy and the set sizes."""

    method: Literal["direct", "improve_human", "improve_llm"] = "direct"
    """direct: recorded responses rated high (no teacher); improve_*: the teacher rewrites."""
    strategy: Literal["naive", "all_three", "identify_lacking", "cognitive", "affective", "compassionate", "sequential"] = "all_three"
    """The improvement prompt (see empathy_distill/prompts)."""
    sft_dialogues: int = Field(950, ge=0)
    """Train dialogues for SFT (improvement methods); scaled down on smaller data."""
    dpo_dialogues: int = Field(800, ge=0)
    """Train dialogues for DPO, disjoint from the SFT ones."""
    seed: int = 0
    """Seed of the SFT/DPO assignment."""
    target_words: int = Field(28, ge=1)
    """Length asked of the teacher (the data's average reply is about 28 words)."""
    max_words: int = Field(97, ge=1)
    """Replies longer than this are invalid (the data's longest is 97 words)."""
    direct_min_rating: int = Field(3, ge=1, le=3)
    """direct: recorded LLM responses rated at least this become SFT rows and chosen responses."""


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
    bootstrap: BootstrapConfig = BootstrapConfig()
    teacher: TeacherConfig = TeacherConfig()
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
